//! The broker under test, as a child process (`gjeldsbro serve --config C`): this
//! crate cannot link the broker (the broker depends on it), and a separate
//! process is also what lets us read its own CPU time and peak memory from
//! /proc. Also the one-shot CLI calls (`pull`, `dev-token`) and reading
//! `/metrics` (on the broker's operations listener, `ops_listen`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::runner::RunError;

/// Linux reports utime and stime in clock ticks of `USER_HZ`, which is 100 on
/// every architecture the kernel supports for userspace ABI purposes.
const USER_HZ: f64 = 100.0;

/// How long the broker may take to say it is ready (a debug build on a busy
/// machine opens its store, runs migrations and loads the index).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `gjeldsbro serve`; killed when dropped.
pub struct BrokerProcess {
    child: tokio::process::Child,
    pid: u32,
    pub url: String,
    /// The operations listener: `/metrics`, detailed `/readyz`.
    pub ops_url: String,
    log: PathBuf,
}

/// Runs `bin args...` to completion and returns its stdout; a non-zero exit is
/// an error carrying the end of its stderr.
pub async fn run_cli(bin: &Path, args: &[&str]) -> Result<String, RunError> {
    let what = format!("{} {}", bin.display(), args.first().copied().unwrap_or(""));
    let out = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| RunError::Broker(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(RunError::Broker(format!(
            "{what} failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 2000)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    // Step forward to a char boundary.
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

impl BrokerProcess {
    /// Starts `bin serve --config config` listening on `addr` (the config's
    /// `listen`), logging to `log`, and waits for `/readyz`.
    pub async fn start(
        bin: &Path,
        config: &Path,
        addr: std::net::SocketAddr,
        ops: std::net::SocketAddr,
        log: &Path,
    ) -> Result<BrokerProcess, RunError> {
        let log_file = std::fs::File::create(log)
            .map_err(|e| RunError::Io(format!("cannot create {}: {e}", log.display())))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| RunError::Io(format!("cannot reopen {}: {e}", log.display())))?;
        let child = tokio::process::Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RunError::Broker(format!("cannot start {}: {e}", bin.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| RunError::Broker("the broker exited at once".into()))?;
        let mut broker = BrokerProcess {
            child,
            pid,
            url: format!("http://{addr}"),
            ops_url: format!("http://{ops}"),
            log: log.to_owned(),
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    async fn wait_ready(&mut self) -> Result<(), RunError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| RunError::Broker(format!("cannot build an HTTP client: {e}")))?;
        let url = format!("{}/readyz", self.url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RunError::Broker(format!(
                    "the broker exited ({status}) before it was ready; its log: {}",
                    self.log_tail()
                )));
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RunError::Broker(format!(
                    "the broker was not ready within {READY_TIMEOUT:?}; its log: {}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(&self.log)
            .map(|t| tail(&t, 2000).to_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// User + system CPU seconds the broker has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.pid)
    }

    /// The broker's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        parse_vm_hwm(&text)
    }

    /// Stops the broker and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// User + system CPU seconds process `pid` has used so far.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = parse_stat_cpu(&text)?;
    Some((user + system) as f64 / USER_HZ)
}

/// (utime, stime) in clock ticks from `/proc/<pid>/stat`. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted after the
/// last `)`: there state is field 3, utime field 14 and stime field 15.
pub fn parse_stat_cpu(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// `VmHWM:   12345 kB` from `/proc/<pid>/status`, in KiB.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The machine's load average (`/proc/loadavg`, first three fields).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The sum of the samples of metric `name` whose labels include every pair of
/// `with`, in Prometheus text format.
pub fn metric_sum(scrape: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let matches = with
                .iter()
                .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            if !matches {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        // A command name with spaces and a ')' must not shift the fields.
        let stat = "4242 (gjeld sbro) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 567 0 0 20 0 9 0 100 2000000 3000 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some((1234, 567)));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        // Burn a little CPU so the tick counters have something to show.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let cpu = cpu_seconds_of(std::process::id()).expect("own /proc/<pid>/stat");
        assert!(cpu >= 0.0);
        let status = std::fs::read_to_string("/proc/self/status").expect("own status");
        assert!(parse_vm_hwm(&status).is_some_and(|kib| kib > 0));
        assert!(load_average().split_whitespace().count() == 3);
    }

    #[test]
    fn peak_rss_comes_from_vm_hwm() {
        let status =
            "Name:\tgjeldsbro\nVmPeak:\t  900000 kB\nVmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(45678));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn metrics_are_summed_by_name_and_labels() {
        let scrape = "# HELP x\n\
            gjeldsbro_lender_fallbacks_total{lender=\"lender-1\",result=\"snapshot\"} 3\n\
            gjeldsbro_lender_fallbacks_total{lender=\"lender-2\",result=\"snapshot\"} 4\n\
            gjeldsbro_lender_fallbacks_total{lender=\"lender-2\",result=\"missing\"} 1\n\
            gjeldsbro_lender_circuit_state{lender=\"lender-4\"} 1\n\
            gjeldsbro_index_persons 100\n";
        assert_eq!(
            metric_sum(scrape, "gjeldsbro_lender_fallbacks_total", &[]),
            8.0
        );
        assert_eq!(
            metric_sum(
                scrape,
                "gjeldsbro_lender_fallbacks_total",
                &[("result", "snapshot")]
            ),
            7.0
        );
        assert_eq!(
            metric_sum(
                scrape,
                "gjeldsbro_lender_circuit_state",
                &[("lender", "lender-4")]
            ),
            1.0
        );
        // "lender-1" must not match "lender-10"-style prefixes or other names.
        assert_eq!(
            metric_sum(
                scrape,
                "gjeldsbro_lender_circuit_state",
                &[("lender", "lender-")]
            ),
            0.0
        );
        assert_eq!(metric_sum(scrape, "gjeldsbro_index_persons", &[]), 100.0);
    }

    #[test]
    fn tails_cut_on_char_boundaries() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        assert_eq!(tail("æøå", 3), "å");
    }
}
