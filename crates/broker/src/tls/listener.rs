//! Serving the router over TLS, and swapping certificates without a restart.
//!
//! The accept loop is `crate::server`'s, the same for plain HTTP and TLS: it
//! does the handshake on each connection's own task with an acceptor from here.
//!
//! The rustls `ServerConfig` sits in an `ArcSwap`; each connection builds its
//! acceptor from whatever config is current, so a reload affects new
//! connections at once and never disturbs open ones. A reload that fails (a
//! missing, garbled or mismatched file) is logged and the old config stays.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::TlsError;
use super::config::{ServerFiles, TlsConfig, server_config};
use super::peer::CertSummary;
use crate::config::Config;

/// Modification time and length of each file, in `ServerFiles::paths` order;
/// `None` for a file that cannot be stat'ed (being replaced, say).
type Stamp = Vec<Option<(SystemTime, u64)>>;

struct ReloadState {
    /// The files as they were when the config in force was read.
    loaded: Stamp,
    /// The files as they were when a reload last failed: not retried (nor
    /// logged again) until they change once more.
    failed: Option<Stamp>,
}

/// The listener's TLS config, reloadable.
pub struct ServerTls {
    files: ServerFiles,
    /// How often to look at the files; `None`: on SIGHUP only.
    poll: Option<Duration>,
    current: ArcSwap<rustls::ServerConfig>,
    state: Mutex<ReloadState>,
    gauges: TlsGauges,
}

/// What the metrics say about the listener's certificate, for alerts on a
/// certificate about to expire and on replacement files that were refused.
#[derive(Clone)]
struct TlsGauges {
    /// `gjeldsbro_tls_certificate_expiry_timestamp_seconds`: the served
    /// certificate's `notAfter` (Unix seconds; 0 if unreadable).
    expiry: prometheus::IntGauge,
    /// `gjeldsbro_tls_reload_refused`: 1 while the files on disk were refused
    /// and an older certificate is served, else 0.
    refused: prometheus::IntGauge,
}

impl TlsGauges {
    fn new() -> TlsGauges {
        TlsGauges {
            expiry: prometheus::IntGauge::new(
                "gjeldsbro_tls_certificate_expiry_timestamp_seconds",
                "The listener certificate's notAfter, in Unix seconds",
            )
            .expect("valid metric"),
            refused: prometheus::IntGauge::new(
                "gjeldsbro_tls_reload_refused",
                "1 while the TLS files on disk are refused and an older certificate is served",
            )
            .expect("valid metric"),
        }
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("poll", &self.poll)
            .finish()
    }
}

/// What a reload check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change (or changed to something already refused).
    Unchanged,
    /// A new config is in force.
    Reloaded,
    /// The new files could not be used; the old config stays in force.
    Refused,
}

impl ServerTls {
    /// Reads the files once; a failure here stops the start (there is nothing
    /// older to fall back to).
    pub fn load(config: &Config, tls: &TlsConfig) -> Result<ServerTls, TlsError> {
        let files = ServerFiles::from_config(config, tls);
        let stamp = stamp(&files);
        let built = server_config(&files)?;
        log_loaded("TLS certificate loaded", &built.leaf);
        let gauges = TlsGauges::new();
        gauges.expiry.set(built.leaf.not_after_unix.unwrap_or(0));
        Ok(ServerTls {
            gauges,
            poll: (tls.reload_secs > 0).then(|| Duration::from_secs(tls.reload_secs)),
            current: ArcSwap::new(built.config),
            state: Mutex::new(ReloadState {
                loaded: stamp,
                failed: None,
            }),
            files,
        })
    }

    /// Adds the listener's gauges to the broker's metrics.
    pub fn register_metrics(&self, metrics: &crate::metrics::Metrics) {
        let g = &self.gauges;
        for c in [Box::new(g.expiry.clone()), Box::new(g.refused.clone())] {
            if let Err(e) = metrics.register(c) {
                tracing::warn!(error = %e, "TLS metrics not registered");
            }
        }
    }

    /// Whether client certificates are asked for.
    pub fn asks_client_certs(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor with the config in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Reloads if any file changed since the config in force was read.
    pub fn reload_if_changed(&self) -> Reload {
        let now = stamp(&self.files);
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if now == state.loaded || state.failed.as_ref() == Some(&now) {
                return Reload::Unchanged;
            }
        }
        self.reload_with(now)
    }

    /// Reloads whether or not the files changed (SIGHUP).
    pub fn reload(&self) -> Reload {
        self.reload_with(stamp(&self.files))
    }

    /// `stamp` is taken *before* the files are read: if they change while being
    /// read, the next check sees a newer stamp and reads them again.
    fn reload_with(&self, stamp: Stamp) -> Reload {
        match server_config(&self.files) {
            Ok(built) => {
                self.current.store(built.config);
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.loaded = stamp;
                state.failed = None;
                self.gauges
                    .expiry
                    .set(built.leaf.not_after_unix.unwrap_or(0));
                self.gauges.refused.set(0);
                log_loaded("TLS certificate reloaded", &built.leaf);
                Reload::Reloaded
            }
            Err(e) => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.failed = Some(stamp);
                self.gauges.refused.set(1);
                tracing::error!(error = %e, "TLS reload refused; the previous certificate stays in force");
                Reload::Refused
            }
        }
    }

    /// Checks the files every `reload_secs` and on SIGHUP until `stop` turns true.
    pub async fn watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; TLS files are reloaded by polling only");
                None
            }
        };
        let mut tick = self.poll.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let ticked = async {
                match tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(unix)]
            let hung_up = async {
                match hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hung_up = std::future::pending::<()>();
            tokio::select! {
                _ = ticked => {
                    // Blocking file reads, but a few small files a few seconds apart.
                    self.reload_if_changed();
                }
                _ = hung_up => {
                    tracing::info!("SIGHUP: reloading TLS files");
                    self.reload();
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

fn stamp(files: &ServerFiles) -> Stamp {
    files
        .paths()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

fn log_loaded(message: &'static str, leaf: &CertSummary) {
    if leaf.expired() {
        tracing::warn!(serial = %leaf.serial, not_after = %leaf.not_after, "the listener's TLS certificate has expired");
    }
    tracing::info!(serial = %leaf.serial, not_after = %leaf.not_after, "{message}");
}
