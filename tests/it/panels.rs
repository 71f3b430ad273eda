//! A picture of the key dashboard panels (throughput, broker overhead
//! percentiles, per-lender outcomes, fallback share) from a short load run, so
//! people can look instead of read. The broker is scraped every window, and the
//! panels are computed from the deltas the way the recording rules do.
//!
//! The run: a few seconds healthy, then one lender answers 500 (its breaker
//! opens, lookups fall back to its snapshot), then it recovers, which the
//! breaker notices at its next probe (backoff 1 s, doubling while probes fail). The SVG goes to
//! `$GJELDSBRO_PANELS_OUT` when set (docs/observability/load-panels.svg was made
//! that way), else into the test's tempdir.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Fixture, Options};
use gjeldsbro_loadtest::sim::{Behaviour, Fault, Latency};
use plotters::prelude::*;

const WINDOW: Duration = Duration::from_millis(750);
const WINDOWS: usize = 16;
/// Windows [FAULT_FROM, FAULT_UNTIL) have the faulty lender answering 500.
const FAULT_FROM: usize = 4;
const FAULT_UNTIL: usize = 8;
const WORKERS: usize = 6;
const FAULTY: usize = 2;

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(scrape: &str) -> Vec<Sample> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

/// Sum of the samples named `name` whose labels include all of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name && with.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Cumulative bucket counts of a histogram, by upper bound.
fn buckets(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name && with.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
        .filter_map(|(_, l, v)| {
            let le = l.get("le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Prometheus' histogram_quantile over bucket deltas (linear within a bucket).
fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, v)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, v)| *v);
            (*le, v - b)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (le, count) in &delta {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        lower = *le;
        below = *count;
    }
    None
}

struct Panel {
    title: &'static str,
    unit: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

fn draw(path: &std::path::Path, panels: &[Panel]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Gjeldsbro under load: one lender answers 500 between the dashed lines",
        ("sans-serif", 22),
    )?;
    let x_max = WINDOWS as f64 * WINDOW.as_secs_f64();
    let fault = (
        FAULT_FROM as f64 * WINDOW.as_secs_f64(),
        FAULT_UNTIL as f64 * WINDOW.as_secs_f64(),
    );
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(panels) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.45; // headroom for the legend
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc(panel.unit)
            .draw()?;
        for x in [fault.0, fault.1] {
            chart.draw_series(DashedLineSeries::new(
                vec![(x, 0.0), (x, y_max)],
                6,
                4,
                BLACK.mix(0.4).stroke_width(1),
            ))?;
        }
        for (i, (name, points)) in panel.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_renders_the_key_panels() {
    let fx = Fixture::new(Options {
        lenders: 4,
        persons: 300,
        seed: 65,
        timeout_ms: 200,
        // Above the load, so the broker's own per-lender cap (default 50 calls
        // a second, outcome `limited`) does not hide the fault.
        lender_extra: "requests_per_second = 5000\n".into(),
        ..Options::default()
    })
    .await;
    // No answer cache (every lookup calls its lenders, so the fault shows) and
    // no client quota in the way of the load.
    let b = Arc::new(
        fx.broker_with(|t| {
            t.replace(
                "roles = [\"financial_institution\"]",
                "roles = [\"financial_institution\"]\nrequests_per_second = 100000",
            ) + "\n[cache]\nttl_ms = 0\n"
        })
        .await,
    );
    fx.sim(1).set_behaviour(Behaviour {
        latency: Latency::LogNormal {
            median_ms: 15.0,
            sigma: 0.5,
        },
        ..Behaviour::default()
    });
    let persons = Arc::new(fx.persons_with_lenders(1));
    assert!(!persons.is_empty());

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (b, persons, stop) = (b.clone(), persons.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let _ = b.search(&persons[i % persons.len()]).await;
                i += WORKERS;
            }
        }));
    }

    let mut scrapes = vec![(Instant::now(), parse(&b.ops_get("/metrics").await.text()))];
    let started = scrapes[0].0;
    for w in 0..WINDOWS {
        if w == FAULT_FROM {
            fx.sim(FAULTY).set_behaviour(Behaviour {
                fault: Fault::Status500,
                ..Behaviour::default()
            });
        }
        if w == FAULT_UNTIL {
            fx.sim(FAULTY).set_behaviour(Behaviour::default());
        }
        tokio::time::sleep(WINDOW).await;
        scrapes.push((Instant::now(), parse(&b.ops_get("/metrics").await.text())));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }

    let route = [("http_route", common::SEARCH_PATH)];
    let purpose = [("purpose", "search")];
    let lenders: Vec<String> = fx.specs.iter().map(|s| s.id.clone()).collect();
    let mut throughput = Vec::new();
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    let mut outcomes: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut fallback = Vec::new();
    for pair in scrapes.windows(2) {
        let ((t0, before), (t1, after)) = (&pair[0], &pair[1]);
        let dt = t1.duration_since(*t0).as_secs_f64();
        let x = t1.duration_since(started).as_secs_f64();
        let d =
            |name: &str, with: &[(&str, &str)]| sum(after, name, with) - sum(before, name, with);
        throughput.push((x, d("gjeldsbro_http_server_requests_total", &route) / dt));
        let hb = buckets(before, "gjeldsbro_broker_overhead_seconds_bucket", &purpose);
        let ha = buckets(after, "gjeldsbro_broker_overhead_seconds_bucket", &purpose);
        if let Some(v) = quantile(0.5, &hb, &ha) {
            p50.push((x, v * 1e3));
        }
        if let Some(v) = quantile(0.99, &hb, &ha) {
            p99.push((x, v * 1e3));
        }
        for l in &lenders {
            for o in gjeldsbro::metrics::LENDER_OUTCOMES {
                let rate = d(
                    "gjeldsbro_lender_calls_total",
                    &[("lender", l), ("outcome", o)],
                ) / dt;
                outcomes
                    .entry(format!("{l} {o}"))
                    .or_default()
                    .push((x, rate));
            }
        }
        let fallbacks = d("gjeldsbro_lender_fallbacks_total", &[]);
        let ok = d("gjeldsbro_lender_calls_total", &[("outcome", "ok")]);
        fallback.push((x, 100.0 * fallbacks / (fallbacks + ok).max(1e-9)));
    }
    // Only the outcomes that happened, or the legend drowns the lines.
    outcomes.retain(|_, pts| pts.iter().any(|p| p.1 > 0.0));

    let total: f64 = throughput.iter().map(|p| p.1).sum();
    assert!(total > 0.0, "the load ran");
    let faulty = &lenders[FAULTY];
    assert!(
        outcomes
            .keys()
            .any(|k| k.starts_with(faulty.as_str()) && !k.ends_with(" ok")),
        "the faulty lender's failures show: {:?}",
        outcomes.keys().collect::<Vec<_>>()
    );
    let during = fallback[FAULT_FROM + 1..FAULT_UNTIL]
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max);
    assert!(during > 0.0, "fallbacks while a lender fails");

    let panels = vec![
        Panel {
            title: "Throughput (search)",
            unit: "requests / s",
            series: vec![("search".into(), throughput)],
        },
        Panel {
            title: "Broker overhead (search)",
            unit: "ms",
            series: vec![("p50".into(), p50), ("p99".into(), p99)],
        },
        Panel {
            title: "Lender calls by outcome",
            unit: "calls / s",
            series: outcomes.into_iter().collect(),
        },
        Panel {
            title: "Fallback share",
            unit: "% of lender answers",
            series: vec![("all lenders".into(), fallback)],
        },
    ];
    let out = std::env::var_os("GJELDSBRO_PANELS_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fx.dir.path().join("load-panels.svg"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("output dir");
    }
    draw(&out, &panels).expect("render");
    let svg = std::fs::read_to_string(&out).expect("read svg");
    for p in &panels {
        assert!(svg.contains(p.title), "the SVG shows {}", p.title);
    }
}
