//! Prometheus metrics, every name prefixed `gjeldsbro_`. Labels carry routes,
//! statuses, lender ids and outcomes, never a national id.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Seconds; from sub-millisecond broker work up to the longest maxTimeToWait.
const DURATION_BUCKETS: &[f64] = &[
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
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
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
            .buckets(DURATION_BUCKETS.to_vec()),
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
            .buckets(DURATION_BUCKETS.to_vec()),
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
        let build_info = IntGaugeVec::new(
            Opts::new("gjeldsbro_build_info", "Build information"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
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
            Box::new(build_info.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
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
            build_info,
        }
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
