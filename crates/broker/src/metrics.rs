//! Prometheus metrics, every name prefixed `gjeldsbro_`. Labels carry routes,
//! statuses, lender ids and outcomes, never a national id.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds; from sub-millisecond broker work up to the longest maxTimeToWait.
/// `[metrics] duration_buckets` replaces them.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub lender_calls: IntCounterVec,
    pub lender_call_duration: HistogramVec,
    pub fallbacks: IntCounterVec,
    pub fan_out: HistogramVec,
    pub index_persons: IntGauge,
    pub disclosure_failures: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub circuit_state: IntGaugeVec,
    pub extra_calls: IntCounterVec,
    pub overload_rejected: IntCounterVec,
    pub requests_running: IntGauge,
    pub build_info: IntGaugeVec,
    /// Request time not spent waiting on lenders, per purpose.
    pub overhead: HistogramVec,
    pub snapshot_age: GaugeVec,
    pub snapshot_rows: IntGaugeVec,
    pub delivery_last_result: IntGaugeVec,
    pub delivery_last_time: IntGaugeVec,
    pub cache_evictions: IntCounterVec,
    pub lookups_deduplicated: IntCounter,
    pub disclosure_write_duration: Histogram,
    pub consent_checks: IntCounterVec,
}

/// Lender call outcomes (see `crate::lookup::LenderAnswer::outcome`).
pub const LENDER_OUTCOMES: &[&str] = &[
    "ok",
    "timeout",
    "error",
    "malformed",
    "limited",
    "circuit_open",
];
/// Outcomes of the consent check before a consent lookup.
pub const CONSENT_OUTCOMES: &[&str] = &[
    "active",
    "not_found",
    "withdrawn",
    "spent",
    "expired",
    "lost_race",
    "store_error",
];
/// Why an entry left the answer cache (moka's removal causes).
pub const EVICTION_CAUSES: &[&str] = &["expired", "explicit", "replaced", "size"];

impl Metrics {
    pub fn new() -> Self {
        Self::with_buckets(DURATION_BUCKETS)
    }

    /// Metrics whose duration histograms use `buckets` (checked by the config:
    /// positive and strictly increasing).
    pub fn with_buckets(buckets: &[f64]) -> Self {
        let registry = Registry::new();
        let buckets = if buckets.is_empty() {
            DURATION_BUCKETS
        } else {
            buckets
        };
        let http_requests = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_http_server_requests_total",
                "HTTP requests by route and status",
            ),
            &["http_route", "http_response_status_code"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "gjeldsbro_http_server_request_duration_seconds",
                "HTTP request duration",
            )
            .buckets(buckets.to_vec()),
            &["http_route", "http_response_status_code"],
        )
        .expect("valid metric");
        let lender_calls = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_lender_calls_total",
                "Calls to lenders by outcome",
            ),
            &["lender", "outcome"],
        )
        .expect("valid metric");
        let lender_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "gjeldsbro_lender_call_duration_seconds",
                "Duration of calls to lenders",
            )
            .buckets(buckets.to_vec()),
            &["lender", "outcome"],
        )
        .expect("valid metric");
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_lender_fallbacks_total",
                "Lender answers replaced by the snapshot, or missing",
            ),
            &["lender", "result"],
        )
        .expect("valid metric");
        let fan_out = HistogramVec::new(
            HistogramOpts::new(
                "gjeldsbro_lookup_fan_out",
                "Lenders called per person looked up",
            )
            .buckets(vec![0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0]),
            &["purpose"],
        )
        .expect("valid metric");
        let index_persons =
            IntGauge::new("gjeldsbro_index_persons", "Persons in the index").expect("valid metric");
        let disclosure_failures = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_disclosure_log_failures_total",
                "Disclosure records that could not be written",
            ),
            &["purpose"],
        )
        .expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_deliveries_total",
                "Lender deliveries by kind and result",
            ),
            &["lender", "kind", "result"],
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_cache_requests_total",
                "Lender answers by source: hit (cached), miss (called), shared (joined a call in flight)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_rate_limited_requests_total",
                "Requests refused with 429, by client organisation",
            ),
            &["client"],
        )
        .expect("valid metric");
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "gjeldsbro_lender_circuit_state",
                "Each lender's circuit breaker: 0 closed, 1 open, 2 half-open (probing)",
            ),
            &["lender"],
        )
        .expect("valid metric");
        let extra_calls = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_lender_extra_calls_total",
                "Calls beyond the first of a lookup: kind retry or hedge",
            ),
            &["lender", "kind"],
        )
        .expect("valid metric");
        let overload_rejected = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_overload_rejected_total",
                "API requests refused with 503 by load shedding: reason queue_full or queue_timeout",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let requests_running = IntGauge::new(
            "gjeldsbro_api_requests_running",
            "API requests admitted by load shedding and running now",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("gjeldsbro_build_info", "Build information"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "gjeldsbro_broker_overhead_seconds",
                "Lookup time not spent waiting on lenders (total minus the lender wait), by purpose",
            )
            .buckets(buckets.to_vec()),
            &["purpose"],
        )
        .expect("valid metric");
        let snapshot_age = GaugeVec::new(
            Opts::new(
                "gjeldsbro_snapshot_age_seconds",
                "Age of each lender's dataset in force, measured at scrape",
            ),
            &["lender"],
        )
        .expect("valid metric");
        let snapshot_rows = IntGaugeVec::new(
            Opts::new(
                "gjeldsbro_snapshot_rows",
                "Loans in each lender's dataset in force",
            ),
            &["lender"],
        )
        .expect("valid metric");
        let delivery_last_result = IntGaugeVec::new(
            Opts::new(
                "gjeldsbro_delivery_last_result",
                "The lender's latest delivery (file, pull or push): 1 accepted, 0 rejected",
            ),
            &["lender"],
        )
        .expect("valid metric");
        let delivery_last_time = IntGaugeVec::new(
            Opts::new(
                "gjeldsbro_delivery_last_timestamp_seconds",
                "Unix time of the lender's latest delivery",
            ),
            &["lender"],
        )
        .expect("valid metric");
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_cache_evictions_total",
                "Lender answers removed from the cache, by cause: expired, explicit (a push), replaced, size",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let lookups_deduplicated = IntCounter::new(
            "gjeldsbro_lookups_deduplicated_total",
            "Lender calls saved by joining an identical call already in flight",
        )
        .expect("valid metric");
        let disclosure_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gjeldsbro_disclosure_log_write_duration_seconds",
                "Duration of one group commit of disclosure records",
            )
            .buckets(buckets.to_vec()),
        )
        .expect("valid metric");
        let consent_checks = IntCounterVec::new(
            Opts::new(
                "gjeldsbro_consent_checks_total",
                "Consent checks before a consent lookup, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(lender_calls.clone()),
            Box::new(lender_call_duration.clone()),
            Box::new(fallbacks.clone()),
            Box::new(fan_out.clone()),
            Box::new(index_persons.clone()),
            Box::new(disclosure_failures.clone()),
            Box::new(deliveries.clone()),
            Box::new(cache_requests.clone()),
            Box::new(rate_limited.clone()),
            Box::new(circuit_state.clone()),
            Box::new(extra_calls.clone()),
            Box::new(overload_rejected.clone()),
            Box::new(requests_running.clone()),
            Box::new(build_info.clone()),
            Box::new(overhead.clone()),
            Box::new(snapshot_age.clone()),
            Box::new(snapshot_rows.clone()),
            Box::new(delivery_last_result.clone()),
            Box::new(delivery_last_time.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(lookups_deduplicated.clone()),
            Box::new(disclosure_write_duration.clone()),
            Box::new(consent_checks.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let m = Metrics {
            registry,
            http_requests,
            http_duration,
            lender_calls,
            lender_call_duration,
            fallbacks,
            fan_out,
            index_persons,
            disclosure_failures,
            deliveries,
            cache_requests,
            rate_limited,
            circuit_state,
            extra_calls,
            overload_rejected,
            requests_running,
            build_info,
            overhead,
            snapshot_age,
            snapshot_rows,
            delivery_last_result,
            delivery_last_time,
            cache_evictions,
            lookups_deduplicated,
            disclosure_write_duration,
            consent_checks,
        };
        m.prime_fixed();
        m
    }

    /// Series whose labels are known up front start at zero: a counter that
    /// first appears at its first increment is invisible to `rate()` and
    /// `increase()`, so an alert on it would miss the first failure.
    fn prime_fixed(&self) {
        for purpose in ["search", "consent"] {
            self.disclosure_failures.with_label_values(&[purpose]);
        }
        for purpose in ["search", "consent", "own_view"] {
            self.overhead.with_label_values(&[purpose]);
        }
        for r in ["hit", "miss", "shared"] {
            self.cache_requests.with_label_values(&[r]);
        }
        for r in ["queue_full", "queue_timeout"] {
            self.overload_rejected.with_label_values(&[r]);
        }
        for c in EVICTION_CAUSES {
            self.cache_evictions.with_label_values(&[c]);
        }
        for o in CONSENT_OUTCOMES {
            self.consent_checks.with_label_values(&[o]);
        }
    }

    /// Zero series for the configured lenders and client organisations.
    pub fn prime(&self, lenders: &[&str], clients: &[&str]) {
        for l in lenders {
            for o in LENDER_OUTCOMES {
                self.lender_calls.with_label_values(&[l, o]);
            }
            for r in ["snapshot", "missing"] {
                self.fallbacks.with_label_values(&[l, r]);
            }
            self.circuit_state.with_label_values(&[l]);
        }
        for c in clients {
            self.rate_limited.with_label_values(&[c]);
        }
    }

    /// Sets the snapshot gauges from the store's dataset list, `now` in Unix seconds.
    pub fn set_datasets(&self, datasets: &[crate::store::DatasetInfo], now: i64) {
        for d in datasets {
            let loaded = crate::time::unix_seconds_or_epoch(&d.loaded_at);
            self.snapshot_age
                .with_label_values(&[&d.lender_id])
                .set((now - loaded).max(0) as f64);
            self.snapshot_rows
                .with_label_values(&[&d.lender_id])
                .set(d.loans);
        }
    }

    /// Sets the last-delivery gauges from the store's delivery records (newest
    /// first): deliveries loaded by another process (`gjeldsbro ingest`, another
    /// instance) show too. A lender whose latest record is beyond the list
    /// keeps its previous values.
    pub fn set_deliveries(&self, newest_first: &[crate::store::DeliveryRecord]) {
        let mut seen = std::collections::HashSet::new();
        for d in newest_first {
            if seen.insert(d.lender_id.as_str()) {
                let at = crate::time::unix_seconds_or_epoch(&d.at);
                self.record_delivery(&d.lender_id, d.accepted, at);
            }
        }
    }

    /// Notes a delivery's result for the lender's last-delivery gauges.
    pub fn record_delivery(&self, lender: &str, accepted: bool, now: i64) {
        self.delivery_last_result
            .with_label_values(&[lender])
            .set(i64::from(accepted));
        self.delivery_last_time
            .with_label_values(&[lender])
            .set(now);
    }

    pub fn record_lender_call(&self, lender: &str, outcome: &str, elapsed: Duration) {
        self.lender_calls
            .with_label_values(&[lender, outcome])
            .inc();
        self.lender_call_duration
            .with_label_values(&[lender, outcome])
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_fallback(&self, lender: &str, from_snapshot: bool) {
        let result = if from_snapshot { "snapshot" } else { "missing" };
        self.fallbacks.with_label_values(&[lender, result]).inc();
    }

    /// Adds a collector owned elsewhere (the TLS listener's gauges, say).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
