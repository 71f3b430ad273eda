//! Assembling the broker: everything built once at start and shared by requests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::audit::DisclosureLog;
use crate::auth::{AuthSetupError, Authenticator};
use crate::config::Config;
use crate::index::Index;
use crate::index::rebuild::{Followers, RebuildError, build_from_store, follow_changes};
use crate::ingest::Ingestor;
use crate::lenders::{LenderSetupError, Lenders};
use crate::lookup::{AnswerCache, Lookup};
use crate::metrics::Metrics;
use crate::nin::{BadHashKey, NinHasher};
use crate::store::{self, StoreError};

/// How often the broker looks for index changes made by another process.
const CHANGE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Lenders(#[from] LenderSetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the index: {0}")]
    Index(#[from] RebuildError),
    #[error(transparent)]
    HashKey(#[from] BadHashKey),
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

/// The broker's shared state.
pub struct AppState {
    pub config: Config,
    pub auth: Authenticator,
    pub lookup: Lookup,
    pub disclosures: DisclosureLog,
    pub ingestor: Arc<Ingestor>,
    pub metrics: Arc<Metrics>,
    pub hasher: NinHasher,
    /// Per-organisation request quotas.
    pub limits: crate::http::ratelimit::ClientLimits,
    /// Per-person quotas on the own view and the embedded page.
    pub person_limits: crate::http::ratelimit::PersonLimits,
    /// Broker-wide load shedding for the API routes.
    pub overload: Arc<crate::http::overload::Overload>,
    pub index_loaded: AtomicBool,
    /// The public `/readyz`'s status, reused for a second.
    pub public_readiness: crate::http::ops::PublicReadiness,
    /// The store's newest change when the index was built; followed from there.
    pub changes_from: i64,
    /// Wakes the change follower early (a store notification arrived).
    pub changes_wake: Arc<tokio::sync::Notify>,
    /// The listener's TLS config when `[tls]` is set (else plain HTTP).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl AppState {
    /// Opens the store, builds lenders and the index, starts the disclosure writer.
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
        let store = store::open(&config.store.url).await?;
        let removed = store.clean_up().await?;
        if removed > 0 {
            tracing::info!(rows = removed, "removed rows of unfinished loads");
        }
        let lenders = Arc::new(Lenders::from_config(&config)?);
        // Read before the index is built: a change landing in between is applied
        // twice, which is harmless, rather than not at all.
        let changes_from = store.latest_change().await?;
        let started = std::time::Instant::now();
        let snapshot = build_from_store(&*store, &lenders).await?;
        tracing::info!(
            persons = snapshot.persons(),
            bytes = snapshot.heap_bytes(),
            ms = started.elapsed().as_millis() as u64,
            "index built"
        );
        let index = Arc::new(Index::new(snapshot));
        let metrics = Arc::new(Metrics::with_buckets(
            config
                .metrics
                .duration_buckets
                .as_deref()
                .unwrap_or_default(),
        ));
        let lender_ids: Vec<&str> = lenders.iter().map(|l| l.id.as_str()).collect();
        let client_orgs: Vec<&str> = config.clients.iter().map(|c| c.org_no.as_str()).collect();
        metrics.prime(&lender_ids, &client_orgs);
        if let Ok(datasets) = store.datasets().await {
            metrics.set_datasets(&datasets, time::OffsetDateTime::now_utc().unix_timestamp());
        }
        if let Ok(deliveries) = store.deliveries(1_000).await {
            metrics.set_deliveries(&deliveries);
        }
        for l in lenders.iter() {
            l.calls.count_into(crate::lenders::calls::ExtraCalls {
                retries: metrics.extra_calls.with_label_values(&[&l.id, "retry"]),
                hedges: metrics.extra_calls.with_label_values(&[&l.id, "hedge"]),
            });
        }
        if let Some(tls) = &tls {
            tls.register_metrics(&metrics);
        }
        let hasher = NinHasher::new(config.log_hash_key.as_deref())?;
        let disclosures = DisclosureLog::start_timed(
            store.clone(),
            Some(metrics.disclosure_write_duration.clone()),
        );
        let cache = Arc::new(AnswerCache::counted(
            &config.cache,
            lenders.len(),
            Some(metrics.cache_evictions.clone()),
        ));
        let ingestor = Arc::new(
            Ingestor::new(
                store.clone(),
                lenders.clone(),
                Some(index.clone()),
                config.id_policy(),
            )
            .with_metrics(metrics.clone())
            .with_cache(cache.clone()),
        );
        let overload = crate::http::overload::Overload::new(&config.overload, metrics.clone());
        Ok(Arc::new(AppState {
            auth,
            lookup: Lookup::new(index, lenders, store, metrics.clone(), cache),
            disclosures,
            ingestor,
            metrics,
            hasher,
            limits: crate::http::ratelimit::ClientLimits::new(&config.clients),
            person_limits: crate::http::ratelimit::PersonLimits::new(&config.quota),
            overload,
            index_loaded: AtomicBool::new(true),
            public_readiness: Default::default(),
            changes_from,
            changes_wake: Arc::new(tokio::sync::Notify::new()),
            tls,
            config,
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
    if let Err(e) = state
        .lookup
        .store
        .watch_changes(state.changes_wake.clone())
        .await
    {
        tracing::warn!(error = %e, "no change notifications; following by polling only");
    }
    tokio::spawn(follow_changes(
        Followers {
            store: state.lookup.store.clone(),
            lenders: state.lookup.lenders.clone(),
            index: state.lookup.index.clone(),
            cache: state.lookup.cache.clone(),
        },
        state.changes_from,
        CHANGE_POLL,
        state.changes_wake.clone(),
        stop_rx.clone(),
    ));
    if let Some(tls) = &state.tls {
        tokio::spawn(tls.clone().watch(stop_rx.clone()));
    }
    tokio::spawn(crate::ingest::schedule::run_scheduled_pulls(
        state.ingestor.clone(),
        state.lookup.lenders.clone(),
        crate::ingest::pull::PullSettings::default(),
        stop_rx,
    ));
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
                app: crate::http::ops_router(state.clone()),
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
            app: crate::http::router(state.clone()),
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

// === impl Ports for AppState ===

/// The broker's own parts behind the disclosure pipeline's ports.
impl crate::disclose::Ports for AppState {
    async fn persons(
        &self,
        nins: &[crate::nin::NationalId],
        kinds: gjeldsbro_adapter::KindSet,
        deadline: tokio::time::Instant,
        trace: &crate::lookup::TraceContext,
    ) -> Vec<crate::lookup::PersonDebt> {
        self.lookup.persons(nins, kinds, deadline, trace).await
    }

    async fn record(
        &self,
        records: Vec<crate::audit::DisclosureRecord>,
    ) -> Result<(), crate::audit::AuditError> {
        self.disclosures.record(records).await
    }

    async fn use_consent_and_record(
        &self,
        request: &crate::store::UseRequest,
        records: &[crate::audit::DisclosureRecord],
    ) -> Result<bool, StoreError> {
        self.lookup
            .store
            .use_consent_and_record(request, records)
            .await
    }

    fn lender_id(&self, idx: crate::index::LenderIdx) -> Option<&str> {
        self.lookup.lenders.get(idx).map(|l| l.id.as_str())
    }

    fn redact(
        &self,
        merged: &crate::lookup::MergedDebt,
        purpose: crate::redact::Purpose,
        kinds: gjeldsbro_adapter::KindSet,
    ) -> crate::model::DebtInformation {
        crate::redact::redact_kinds(merged, purpose, kinds, &self.lookup.lenders)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}
