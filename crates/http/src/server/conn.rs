//! One connection: the TLS handshake when the listener has TLS, then hyper
//! serving the router, watched for idleness and for shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::Limits;
use crate::tls::{PeerIdentity, ServerTls};

/// Everything a connection's task needs from its listener.
pub(super) struct Task {
    pub listener: &'static str,
    pub app: Router,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub limits: Limits,
    pub tls: Option<Arc<ServerTls>>,
    pub graceful: watch::Receiver<bool>,
    pub force: watch::Receiver<bool>,
    pub open: prometheus::IntGauge,
    pub closed: prometheus::IntCounterVec,
}

/// Counts the connection open while it lives.
struct Open(prometheus::IntGauge);

impl Open {
    fn new(gauge: prometheus::IntGauge) -> Open {
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Task {
    /// Serves the connection to its end; `slot` (its place under the cap) is
    /// given back when the task ends, however it ends.
    pub async fn run(self, tcp: TcpStream, slot: OwnedSemaphorePermit) {
        let _slot = slot;
        let _open = Open::new(self.open.clone());
        match self.tls.clone() {
            None => self.serve(tcp, None).await,
            Some(tls) => {
                // The handshake counts against the header deadline: a client
                // that connects and says nothing is closed after it either way.
                let accepted =
                    tokio::time::timeout(self.limits.header_read, tls.acceptor().accept(tcp)).await;
                let stream = match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        // Unknown CA, expired certificate, plain HTTP on the TLS port...
                        // rustls's message names the reason, not the certificate.
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        self.count_closed("handshake");
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| PeerIdentity::from_leaf(leaf));
                self.serve(stream, peer).await
            }
        }
    }

    fn count_closed(&self, reason: &str) {
        count_closed(&self.closed, self.listener, reason);
    }

    async fn serve<I>(self, io: I, peer: Option<PeerIdentity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Task {
            listener,
            app,
            builder,
            limits,
            mut graceful,
            mut force,
            closed,
            ..
        } = self;
        let activity = Activity::new();
        let tracked = activity.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let in_flight = InFlight::enter(&tracked);
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                drop(in_flight);
                response
            }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        // The first request head must arrive within the header deadline; after
        // that a connection may sit idle for the idle timeout.
        let mut allowed_idle = limits.header_read;
        // Set once the connection was asked to close: by then it only has to
        // finish what it started, within a bound.
        let mut closing_by: Option<Instant> = None;
        loop {
            let deadline = match (activity.idle_deadline(allowed_idle), closing_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        // A header deadline hyper enforced ends up here.
                        if is_header_timeout(&*e) {
                            count_closed(&closed, listener, "header_timeout");
                        }
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = activity.changed.notified() => {
                    // A request started or finished: once one finished, idleness
                    // is measured against the idle timeout.
                    if activity.served() {
                        allowed_idle = limits.idle;
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    if closing_by.is_some_and(|by| now >= by) {
                        // Asked to close and still not done (a client that
                        // does not read its answer): close now.
                        return;
                    }
                    if closing_by.is_none()
                        && activity.idle_deadline(allowed_idle).is_some_and(|at| now >= at)
                    {
                        let reason = if activity.served() { "idle" } else { "header_timeout" };
                        count_closed(&closed, listener, reason);
                        connection.as_mut().graceful_shutdown();
                        closing_by = Some(now + limits.header_read);
                    }
                }
                changed = graceful.changed(), if closing_by.is_none() => {
                    if changed.is_err() || *graceful.borrow() {
                        connection.as_mut().graceful_shutdown();
                        // The listener's grace period bounds this one.
                        closing_by = Some(Instant::now() + limits.shutdown_grace);
                    }
                }
                changed = force.changed() => {
                    if changed.is_err() || *force.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

fn count_closed(closed: &prometheus::IntCounterVec, listener: &str, reason: &str) {
    closed.with_label_values(&[listener, reason]).inc();
}

/// Whether hyper ended the connection because a request head did not arrive in time.
fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    /// When the last request finished (or the connection opened), and whether
    /// any request has finished yet.
    idle_since: Mutex<(Instant, bool)>,
    changed: Notify,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new((Instant::now(), false)),
            changed: Notify::new(),
        })
    }

    /// When the connection has been idle for `allowed`; `None` while a request
    /// is in flight.
    fn idle_deadline(&self, allowed: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let (since, _) = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since + allowed)
    }

    fn served(&self) -> bool {
        self.idle_since.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// One request in flight; when it ends (answered or dropped), the connection's
/// idle clock restarts.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_one();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), true);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}
