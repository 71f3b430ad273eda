//! Assembling the broker: everything built once at start and shared by requests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use gjeldsbro_broker::{Broker, BuildError};

use crate::auth::{AuthSetupError, Authenticator};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Broker(#[from] BuildError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The broker's shared state: its core, and the HTTP edge around it.
pub struct AppState {
    /// Lookups, the log, deliveries, metrics (reached through `Deref`, so
    /// `state.lookup` reads as the core's).
    pub broker: Broker,
    pub auth: Authenticator,
    /// Per-organisation request quotas.
    pub limits: crate::ratelimit::ClientLimits,
    /// Per-person quotas on the own view and the embedded page.
    pub person_limits: crate::ratelimit::PersonLimits,
    /// Broker-wide load shedding for the API routes.
    pub overload: Arc<crate::overload::Overload>,
    /// The public `/readyz`'s status, reused for a second.
    pub public_readiness: crate::ops::PublicReadiness,
    /// The listener's TLS config when `[tls]` is set (else plain HTTP).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl std::ops::Deref for AppState {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl AppState {
    /// Checks TLS and the token keys, then builds the core and the edge.
    pub async fn build(config: Config) -> Result<Arc<AppState>, StartError> {
        let jwks = config.resolve(&config.auth.jwks_file);
        // First: a bad certificate should stop the start before anything else runs.
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(crate::tls::ServerTls::load(&config, t)?)),
            None => None,
        };
        // The committed dev key signs for anyone who has the repository.
        crate::auth::refuse_dev_key(&jwks, config.dev_mode)?;
        let auth = Authenticator::new(&config.auth, &jwks, &config.clients, config.id_policy())?
            .with_embed_audience(&config.embed.audience(&config.auth))?;
        let broker = Broker::build(config).await?;
        if let Some(tls) = &tls {
            tls.register_metrics(&broker.metrics);
        }
        let overload =
            crate::overload::Overload::new(&broker.config.overload, broker.metrics.clone());
        Ok(Arc::new(AppState {
            auth,
            limits: crate::ratelimit::ClientLimits::new(&broker.config.clients),
            person_limits: crate::ratelimit::PersonLimits::new(&broker.config.quota),
            overload,
            public_readiness: Default::default(),
            tls,
            broker,
        }))
    }
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen.to_string(),
            source,
        })
}

/// Binds the operations listener (`ops_listen`).
pub async fn bind_ops(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.ops_listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.ops_listen.to_string(),
            source,
        })
}

/// Serves the public listener only (no operations listener) until `shutdown`
/// completes; see [`serve_with_ops`].
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_with_ops(state, listener, None, shutdown).await
}

/// Serves on `listener` (and the operations endpoints on `ops`) until
/// `shutdown` completes, then drains in-flight requests for at most
/// `[server] shutdown_grace_secs`.
pub async fn serve_with_ops(
    state: Arc<AppState>,
    listener: TcpListener,
    ops: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    state.start_jobs(stop_rx.clone()).await;
    if let Some(tls) = &state.tls {
        tokio::spawn(tls.clone().watch(stop_rx));
    }
    let server = &state.config.server;
    // Client sockets must never take the descriptors the store and the lenders
    // need: raise the soft limit, keep the connection cap below it.
    let nofile = crate::server::nofile::raise_to_hard_limit();
    let max_connections = crate::server::nofile::connection_cap(server.max_connections, nofile);
    if max_connections < server.max_connections {
        tracing::warn!(
            open_files = nofile,
            configured = server.max_connections,
            max_connections,
            "the open-files limit caps the connections below server.max_connections"
        );
    }
    tracing::info!(
        open_files = nofile,
        max_connections,
        "open-files limit and connection cap"
    );
    let conn_metrics = crate::server::ConnMetrics::new();
    conn_metrics.register(&state.metrics);
    // One shutdown for both listeners.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let down = move || {
        let mut rx = down_rx.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    };
    let ops_task = ops.map(|tcp| {
        if let Ok(addr) = tcp.local_addr() {
            tracing::info!(ops_listen = %addr, "operations endpoints listening");
        }
        tokio::spawn(crate::server::serve(
            crate::server::Listener {
                name: "ops",
                tcp,
                app: crate::ops_router(state.clone()),
                limits: crate::server::Limits::ops(server),
                tls: None,
            },
            conn_metrics.clone(),
            down(),
        ))
    });
    let public = crate::server::serve(
        crate::server::Listener {
            name: "public",
            tcp: listener,
            app: crate::router(state.clone()),
            limits: crate::server::Limits::public(server, max_connections),
            tls: state.tls.clone(),
        },
        conn_metrics,
        down(),
    );
    let signal = async move {
        shutdown.await;
        let _ = down_tx.send(true);
    };
    let (result, ()) = tokio::join!(public, signal);
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    let _ = stop_tx.send(true);
    state.index_loaded.store(false, Ordering::Release);
    result.map_err(StartError::Serve)
}

/// Loads the config file and serves until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::load(config_path)?;
    let state = AppState::build(config).await?;
    let listener = bind(&state.config).await?;
    let ops = bind_ops(&state.config).await?;
    tracing::info!(listen = %state.config.listen, lenders = state.lookup.lenders.len(),
        tls = state.tls.is_some(), "gjeldsbro serving");
    serve_with_ops(state, listener, Some(ops), shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
