//! When each lender's daily pull runs: at its `pull_at` (HH:MM, Europe/Oslo, as
//! operators think of the day), but never before 05:00 UTC, when lenders' daily
//! datasets are ready.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::Ingestor;
use super::pull::PullSettings;
use crate::lenders::Lenders;

/// `HH:MM` → a time of day.
pub fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

fn oslo() -> TimeZone {
    TimeZone::get("Europe/Oslo").unwrap_or(TimeZone::UTC)
}

/// The next instant strictly after `now` at which a pull set for `at` (Oslo time)
/// runs: that local time on the earliest day it is still ahead, moved to 05:00 UTC
/// when it would fall earlier in UTC.
pub fn next_run(now: Timestamp, at: Time) -> Timestamp {
    let tz = oslo();
    let today = now.to_zoned_datetime(tz.clone()).date();
    for days in 0..3 {
        let Ok(date) = today.checked_add(days.days()) else {
            continue;
        };
        let Ok(local) = date.to_datetime(at).to_zoned_datetime(tz.clone()) else {
            continue;
        };
        let earliest = date
            .to_datetime(Time::constant(5, 0, 0, 0))
            .to_zoned_datetime(TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(local.timestamp());
        let run = local.timestamp().max(earliest);
        if run > now {
            return run;
        }
    }
    // Unreachable in practice (a day always lies ahead); run in a day.
    now.checked_add(24.hours()).unwrap_or(now)
}

/// Runs every scheduled pull until `stop` fires.
pub async fn run_scheduled_pulls(
    ingestor: Arc<Ingestor>,
    lenders: Arc<Lenders>,
    settings: PullSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for lender in lenders.iter() {
        let Some(at) = lender.pull_at else { continue };
        let (ingestor, lenders, settings, mut stop) = (
            ingestor.clone(),
            lenders.clone(),
            settings.clone(),
            stop.clone(),
        );
        let idx = lender.idx;
        tasks.push(tokio::spawn(async move {
            loop {
                let now = Timestamp::now();
                let run = next_run(now, at);
                let wait = Duration::try_from(run.duration_since(now)).unwrap_or(Duration::from_secs(60));
                let Some(lender) = lenders.get(idx) else { return };
                tracing::info!(lender = %lender.id, next = %run.to_zoned_datetime(oslo()), "daily pull scheduled");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                let result = ingestor.pull(&lender.client, &lender.id, &lender.base_url, &lender.org_no, &settings).await;
                match result {
                    Ok(r) => tracing::info!(lender = %lender.id, customers = r.customers, loans = r.loans, "daily pull accepted"),
                    Err(e) => tracing::error!(lender = %lender.id, error = %e, "daily pull failed; the previous dataset stays in force"),
                }
            }
        }));
    }
    let _ = futures::future::join_all(tasks).await;
    drop(stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("06:30"), Some(Time::constant(6, 30, 0, 0)));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("6"), None);
        assert_eq!(parse_hhmm("ab:cd"), None);
    }

    #[test]
    fn next_run_follows_oslo_time_and_never_precedes_five_utc() {
        let at = Time::constant(7, 30, 0, 0);
        // Winter (UTC+1): 07:30 Oslo is 06:30 UTC.
        assert_eq!(
            next_run(ts("2026-01-10T03:00:00Z"), at),
            ts("2026-01-10T06:30:00Z")
        );
        // Summer (UTC+2): 07:30 Oslo is 05:30 UTC.
        assert_eq!(
            next_run(ts("2026-07-10T03:00:00Z"), at),
            ts("2026-07-10T05:30:00Z")
        );
        // After today's run: tomorrow.
        assert_eq!(
            next_run(ts("2026-07-10T05:30:00Z"), at),
            ts("2026-07-11T05:30:00Z")
        );
        // 06:00 Oslo in summer is 04:00 UTC: held back to 05:00 UTC.
        let early = Time::constant(6, 0, 0, 0);
        assert_eq!(
            next_run(ts("2026-07-10T01:00:00Z"), early),
            ts("2026-07-10T05:00:00Z")
        );
    }
}
