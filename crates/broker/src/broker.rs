//! The broker's core assembled: everything built once at start that the
//! lookups, consents, deliveries and the log's jobs share, with no HTTP in it.
//! The HTTP crate's `AppState` adds the edge (authentication, quotas, load
//! shedding, TLS) around one of these.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::audit::DisclosureLog;
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
pub enum BuildError {
    #[error(transparent)]
    Lenders(#[from] LenderSetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the index: {0}")]
    Index(#[from] RebuildError),
    #[error(transparent)]
    HashKey(#[from] BadHashKey),
}

/// The broker's shared core.
pub struct Broker {
    pub config: Config,
    pub lookup: Lookup,
    pub disclosures: DisclosureLog,
    pub ingestor: Arc<Ingestor>,
    pub metrics: Arc<Metrics>,
    pub hasher: NinHasher,
    pub index_loaded: AtomicBool,
    /// The store's newest change when the index was built; followed from there.
    pub changes_from: i64,
    /// Wakes the change follower early (a store notification arrived).
    pub changes_wake: Arc<tokio::sync::Notify>,
}

impl Broker {
    /// Opens the store, builds lenders and the index, starts the disclosure writer.
    pub async fn build(config: Config) -> Result<Broker, BuildError> {
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
        Ok(Broker {
            lookup: Lookup::new(index, lenders, store, metrics.clone(), cache),
            disclosures,
            ingestor,
            metrics,
            hasher,
            index_loaded: AtomicBool::new(true),
            changes_from,
            changes_wake: Arc::new(tokio::sync::Notify::new()),
            config,
        })
    }

    /// Starts the jobs that run beside the requests until `stop` turns true:
    /// following other processes' index changes (notified, else polled) and
    /// the scheduled pulls of lenders' datasets.
    pub async fn start_jobs(&self, stop: tokio::sync::watch::Receiver<bool>) {
        if let Err(e) = self
            .lookup
            .store
            .watch_changes(self.changes_wake.clone())
            .await
        {
            tracing::warn!(error = %e, "no change notifications; following by polling only");
        }
        tokio::spawn(follow_changes(
            Followers {
                store: self.lookup.store.clone(),
                lenders: self.lookup.lenders.clone(),
                index: self.lookup.index.clone(),
                cache: self.lookup.cache.clone(),
            },
            self.changes_from,
            CHANGE_POLL,
            self.changes_wake.clone(),
            stop.clone(),
        ));
        tokio::spawn(crate::ingest::schedule::run_scheduled_pulls(
            self.ingestor.clone(),
            self.lookup.lenders.clone(),
            crate::ingest::pull::PullSettings::default(),
            stop,
        ));
    }
}

// === impl Ports for Broker ===

/// The broker's own parts behind the disclosure pipeline's ports.
impl crate::disclose::Ports for Broker {
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
