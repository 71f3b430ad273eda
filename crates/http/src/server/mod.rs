//! The broker's listeners: one accept loop for plain HTTP and TLS alike, with
//! the limits that keep a client without credentials from tying the broker up.
//!
//! - a cap on open connections (a semaphore: when it is full the loop stops
//!   accepting and new connections wait in the kernel's backlog, so the process
//!   never runs out of file descriptors on client sockets);
//! - a header deadline: HTTP/1.1's `header_read_timeout` for every request head,
//!   and, for a new connection, a deadline for its first request (TLS handshake
//!   included) that also covers hyper's protocol sniffing and HTTP/2;
//! - an idle timeout: a connection with no request in flight is closed;
//! - HTTP/2 stream and header-list limits;
//! - a bounded graceful shutdown: stop accepting, let open requests finish for
//!   `shutdown_grace_secs`, then close what is left.
//!
//! The whole-body deadline (`408`) is an axum middleware ([`crate::deadline`])
//! so that its answer is the usual error JSON; authentication before any body
//! is read is [`crate::authn`].
//!
//! `axum::serve` has none of these knobs, hence hyper-util directly (as the TLS
//! listener already did).

mod conn;
pub mod nofile;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::ServerConfig;
use crate::tls::ServerTls;

/// After an accept error (out of file descriptors, say) the loop waits this
/// long before accepting again, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Open connections the operations listener takes at most: it serves a few
/// scrapers and probes, never clients.
pub const OPS_MAX_CONNECTIONS: usize = 64;

/// The limits of one listener, in the types the loop uses.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_bytes: u32,
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The public listener's limits; `max_connections` as capped by
    /// [`nofile::connection_cap`].
    pub fn public(config: &ServerConfig, max_connections: usize) -> Limits {
        Limits {
            header_read: Duration::from_secs(config.header_read_timeout_secs),
            idle: Duration::from_secs(config.idle_timeout_secs),
            max_connections: max_connections.max(1),
            http2_max_concurrent_streams: config.http2_max_concurrent_streams,
            http2_max_header_list_bytes: config.http2_max_header_list_bytes,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        }
    }

    /// The operations listener: the same deadlines, a small connection cap.
    pub fn ops(config: &ServerConfig) -> Limits {
        Limits {
            max_connections: OPS_MAX_CONNECTIONS,
            ..Limits::public(config, OPS_MAX_CONNECTIONS)
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_header_list_size(self.http2_max_header_list_bytes);
        builder
    }
}

/// What the listeners report in `/metrics`.
#[derive(Clone)]
pub struct ConnMetrics {
    /// `gjeldsbro_http_connections_open{listener}`.
    pub open: prometheus::IntGaugeVec,
    /// `gjeldsbro_http_connections_closed_total{listener, reason}`: connections
    /// the broker closed for a limit (`header_timeout`, `idle`, `handshake`).
    pub closed: prometheus::IntCounterVec,
}

impl ConnMetrics {
    pub fn new() -> ConnMetrics {
        ConnMetrics {
            open: prometheus::IntGaugeVec::new(
                prometheus::Opts::new(
                    "gjeldsbro_http_connections_open",
                    "Open client connections, per listener (public or ops)",
                ),
                &["listener"],
            )
            .expect("valid metric"),
            closed: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "gjeldsbro_http_connections_closed_total",
                    "Connections the broker closed at a limit: reason header_timeout, idle or handshake",
                ),
                &["listener", "reason"],
            )
            .expect("valid metric"),
        }
    }

    /// Adds the families to the broker's metrics.
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        for c in [
            Box::new(self.open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.closed.clone()),
        ] {
            if let Err(e) = metrics.register(c) {
                tracing::warn!(error = %e, "connection metrics not registered");
            }
        }
    }
}

impl Default for ConnMetrics {
    fn default() -> Self {
        ConnMetrics::new()
    }
}

/// One listener to serve.
pub struct Listener {
    /// `public` or `ops`, for logs and metrics.
    pub name: &'static str,
    pub tcp: TcpListener,
    pub app: Router,
    pub limits: Limits,
    /// TLS on this listener, when configured.
    pub tls: Option<Arc<ServerTls>>,
}

/// Serves `listener` until `shutdown` completes, then drains it: open requests
/// get `shutdown_grace` to finish, after which their connections are closed.
pub async fn serve(
    listener: Listener,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener {
        name,
        tcp,
        app,
        limits,
        tls,
    } = listener;
    let builder = Arc::new(limits.builder());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // `graceful`: finish what is in flight and close; `force`: close now.
    let (graceful_tx, graceful_rx) = watch::channel(false);
    let (force_tx, force_rx) = watch::channel(false);
    let open = metrics.open.with_label_values(&[name]);
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, stop accepting rather than accept and drop.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, _remote) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let task = conn::Task {
            listener: name,
            app: app.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            tls: tls.clone(),
            graceful: graceful_rx.clone(),
            force: force_rx.clone(),
            open: open.clone(),
            closed: metrics.closed.clone(),
        };
        tokio::spawn(task.run(stream, slot));
    }
    // Stop accepting, ask every connection to finish, wait for them a bounded
    // time (each holds a slot until it ends), then close the rest.
    drop(tcp);
    let _ = graceful_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            open = open.get(),
            "shutdown grace period over: closing the remaining connections"
        );
        let _ = force_tx.send(true);
    }
    Ok(())
}
