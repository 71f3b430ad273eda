//! Load shedding for the whole broker: at most `max_concurrent` API requests run
//! at once, at most `max_queued` wait for a turn, and none waits longer than
//! `max_queue_wait_ms`. Anything beyond gets `503` with `Retry-After` at once, so
//! overload shows as fast refusals that clients can back off from, never as
//! latency that grows with the backlog.
//!
//! Hand-written over two tokio semaphores rather than tower's `ConcurrencyLimit`,
//! `Buffer` and `LoadShed`: axum applies a route layer to each route separately,
//! which would give every route its own queue, and tower's buffer bounds the
//! queue's length but not the time spent in it. Health, readiness and metrics
//! are not behind it: operators must see an overloaded broker.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;
use crate::config::OverloadConfig;
use crate::metrics::Metrics;

/// The broker-wide admission state, shared by every API route.
pub struct Overload {
    running: Arc<Semaphore>,
    queue: Semaphore,
    max_wait: Duration,
    metrics: Arc<Metrics>,
}

impl Overload {
    pub fn new(config: &OverloadConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Overload {
            running: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            queue: Semaphore::new(config.max_queued),
            max_wait: Duration::from_millis(config.max_queue_wait_ms),
            metrics,
        })
    }

    fn shed(&self, why: &'static str) -> Response {
        self.metrics
            .overload_rejected
            .with_label_values(&[why])
            .inc();
        ApiError::unavailable("the broker is overloaded; try again shortly").into_response()
    }
}

/// The middleware: run now, wait a bounded time in a bounded queue, or refuse.
pub async fn middleware(
    State(overload): State<Arc<Overload>>,
    request: Request,
    next: Next,
) -> Response {
    let permit = match overload.running.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let Ok(_place) = overload.queue.try_acquire() else {
                return overload.shed("queue_full");
            };
            let waited =
                tokio::time::timeout(overload.max_wait, overload.running.clone().acquire_owned())
                    .await;
            match waited {
                Ok(Ok(permit)) => permit,
                _ => return overload.shed("queue_timeout"),
            }
        }
    };
    let _running = Running::start(&overload.metrics.requests_running, permit);
    next.run(request).await
}

/// Holds the turn and counts it; both end when the request ends, answered or
/// dropped (a client that goes away must not leak a turn).
struct Running<'a> {
    gauge: &'a prometheus::IntGauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<'a> Running<'a> {
    fn start(gauge: &'a prometheus::IntGauge, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        gauge.inc();
        Running {
            gauge,
            _permit: permit,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
