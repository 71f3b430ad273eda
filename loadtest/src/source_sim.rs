//! What the simulators of the other debt sources (student loans, debt
//! collection) share: a fault switch, counters, and the server task.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A fault applied to the data endpoint (never to a token endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceFault {
    #[default]
    None,
    /// `429` with the text `Too busy` (the saldo API's own words).
    TooBusy,
    /// `500`.
    Status500,
    /// `200` with a body that is not JSON.
    Garbage,
}

impl SourceFault {
    /// The faulty answer, or `None` to answer normally.
    pub(crate) fn answer(self) -> Option<Response> {
        match self {
            SourceFault::None => None,
            SourceFault::TooBusy => {
                Some((StatusCode::TOO_MANY_REQUESTS, "Too busy").into_response())
            }
            SourceFault::Status500 => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
            }
            SourceFault::Garbage => Some((StatusCode::OK, "<html>not json</html>").into_response()),
        }
    }
}

/// A counter that tests read.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// A switchable fault.
#[derive(Debug, Default)]
pub struct FaultSwitch(Mutex<SourceFault>);

impl FaultSwitch {
    pub fn get(&self) -> SourceFault {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set(&self, f: SourceFault) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

/// A running simulator: its address and its stop switch.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) async fn start(listen: SocketAddr, app: Router) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(Server {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
