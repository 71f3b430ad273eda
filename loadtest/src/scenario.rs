//! Load-test scenarios: one TOML file each in `loadtest/scenarios/`, naming the
//! arrival rate, duration, warm-up, population, lenders (latency and faults),
//! timed behaviour changes and broker settings. [`Scenario::from_toml`] parses and
//! validates, so a typo fails before anything is started.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sim::{Behaviour, Fault, Latency};

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid TOML for a scenario: {message}")]
    Parse { path: String, message: String },
    #[error("scenario {name:?}: {message}")]
    Invalid { name: String, message: String },
}

/// One load-test scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the report files (`<name>.json`, `.md`, `.svg`): lowercase letters,
    /// digits and `-` only.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Lookups started per second (open model: independent of the answers).
    pub rate_per_s: f64,
    /// The measured period of each path, in seconds.
    pub duration_s: f64,
    /// Lookups sent at the same rate before the measured period and not counted
    /// (connection pools, the broker's caches and hedge statistics fill up).
    #[serde(default = "default_warmup_s")]
    pub warmup_s: f64,
    pub population: PopulationSpec,
    pub lenders: LendersSpec,
    /// Behaviour changes at a time into each path's measured period.
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub broker: BrokerSpec,
}

fn default_warmup_s() -> f64 {
    2.0
}

/// Who is looked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    pub kind: PopulationKind,
    pub persons: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How the next person is picked (the same sequence for both paths).
    #[serde(default)]
    pub choice: Choice,
}

fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopulationKind {
    /// Every person has debt at every lender: the fan-out is `lenders.count`.
    AllLenders,
    /// The demo's mixed population (`gjeldsbro demo`): 1-4 loans at random
    /// lenders, about 20 % without debt; only persons with debt are looked up.
    Demo,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Choice {
    #[default]
    Uniform,
    /// Rank `k` (1-based, in population order) is picked with weight `1/k^s`.
    Zipf { s: f64 },
}

/// The simulated lenders: `lender-1..=count`, all alike at the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LendersSpec {
    pub count: usize,
    /// The broker's per-lender timeout (its deadline for one lender), in ms; the
    /// direct path gives each lender call the same.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Worker threads of the lenders' own runtime (default 2). At high fan-out
    /// the lenders answer tens of thousands of calls a second; on a machine
    /// with cores to spare, more threads keep them from being the bottleneck.
    #[serde(default = "default_sim_threads")]
    pub threads: usize,
}

fn default_timeout_ms() -> u64 {
    300
}

fn default_sim_threads() -> usize {
    2
}

/// At `at_s` seconds into the measured period, lender number `lender` (1-based)
/// switches to `behaviour` (replacing its whole behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at_s: f64,
    pub lender: usize,
    pub behaviour: Behaviour,
}

/// Broker settings written into its generated config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// `[cache] ttl_ms`; 0 (the default here) turns the cache off, so every
    /// lookup really fans out.
    #[serde(default)]
    pub cache_ttl_ms: u64,
    #[serde(default)]
    pub hedge: bool,
    #[serde(default)]
    pub hedge_percentile: Option<f32>,
    #[serde(default)]
    pub hedge_budget_percent: Option<f32>,
    #[serde(default)]
    pub breaker_failures: Option<u32>,
    #[serde(default)]
    pub breaker_backoff_ms: Option<u64>,
    /// `maxTimeToWait` of each search, in ms (1000-60000).
    #[serde(default = "default_max_time_to_wait_ms")]
    pub max_time_to_wait_ms: u64,
    /// `[overload] max_concurrent`; absent keeps the broker's default.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
}

fn default_max_time_to_wait_ms() -> u64 {
    3000
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            cache_ttl_ms: 0,
            hedge: false,
            hedge_percentile: None,
            hedge_budget_percent: None,
            breaker_failures: None,
            breaker_backoff_ms: None,
            max_time_to_wait_ms: default_max_time_to_wait_ms(),
            max_concurrent: None,
        }
    }
}

/// Far more lookups than one generator on one machine can send; a larger rate
/// is a typo.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_LENDERS: usize = 64;

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The fan-out of every lookup, when it is fixed (`all_lenders`).
    pub fn fixed_fan_out(&self) -> Option<usize> {
        match self.population.kind {
            PopulationKind::AllLenders => Some(self.lenders.count),
            PopulationKind::Demo => None,
        }
    }

    /// Checks every rule a run relies on; the message names the field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let fail = |message: String| {
            Err(ScenarioError::Invalid {
                name: self.name.clone(),
                message,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return fail(
                "name must be lowercase letters, digits and '-' (it names the report files)".into(),
            );
        }
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0 && self.rate_per_s <= MAX_RATE) {
            return fail(format!("rate_per_s must be above 0 and at most {MAX_RATE}"));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 3600.0) {
            return fail("duration_s must be above 0 and at most 3600".into());
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0 && self.warmup_s <= 600.0) {
            return fail("warmup_s must be 0-600".into());
        }
        if self.population.persons == 0 {
            return fail("population.persons must be at least 1".into());
        }
        if let Choice::Zipf { s } = self.population.choice
            && !(s.is_finite() && s > 0.0 && s <= 10.0)
        {
            return fail("population.choice zipf s must be above 0 and at most 10".into());
        }
        if self.lenders.count == 0 || self.lenders.count > MAX_LENDERS {
            return fail(format!("lenders.count must be 1-{MAX_LENDERS}"));
        }
        if self.lenders.threads == 0 || self.lenders.threads > 256 {
            return fail("lenders.threads must be 1-256".into());
        }
        if self.lenders.timeout_ms == 0 {
            return fail("lenders.timeout_ms must be above 0".into());
        }
        check_behaviour(&self.lenders.behaviour)
            .or_else(|m| fail(format!("lenders.behaviour: {m}")))?;
        for (i, e) in self.events.iter().enumerate() {
            if e.lender == 0 || e.lender > self.lenders.count {
                return fail(format!(
                    "events[{i}].lender must be 1-{} (lenders are numbered from 1)",
                    self.lenders.count
                ));
            }
            if !(e.at_s.is_finite() && e.at_s >= 0.0 && e.at_s < self.duration_s) {
                return fail(format!(
                    "events[{i}].at_s must lie inside the measured period (0 to duration_s)"
                ));
            }
            check_behaviour(&e.behaviour)
                .or_else(|m| fail(format!("events[{i}].behaviour: {m}")))?;
        }
        let b = &self.broker;
        if !(1000..=60_000).contains(&b.max_time_to_wait_ms) {
            return fail("broker.max_time_to_wait_ms must be 1000-60000 (the API's range)".into());
        }
        if let Some(p) = b.hedge_percentile
            && !(p > 0.0 && p < 100.0)
        {
            return fail("broker.hedge_percentile must lie between 0 and 100".into());
        }
        if b.max_concurrent == Some(0) {
            return fail("broker.max_concurrent must be at least 1".into());
        }
        Ok(())
    }

    /// The time of the first event, if any (the fault of a black-hole run).
    pub fn first_event(&self) -> Option<&Event> {
        self.events.iter().min_by(|a, b| a.at_s.total_cmp(&b.at_s))
    }
}

/// A behaviour the simulator can carry out as meant.
fn check_behaviour(b: &Behaviour) -> Result<(), String> {
    if !(0.0..=1.0).contains(&b.error_rate) {
        return Err("error_rate must be 0-1".into());
    }
    match b.latency {
        Latency::Fixed { .. } => {}
        Latency::LogNormal { median_ms, sigma } => {
            if !(median_ms.is_finite() && median_ms >= 0.0 && sigma.is_finite() && sigma >= 0.0) {
                return Err("log_normal needs median_ms >= 0 and sigma >= 0".into());
            }
        }
        Latency::Bimodal {
            fast_ms,
            slow_ms,
            slow_fraction,
        } => {
            if !(0.0..=1.0).contains(&slow_fraction) {
                return Err("bimodal slow_fraction must be 0-1".into());
            }
            if slow_ms < fast_ms {
                return Err("bimodal slow_ms must not be below fast_ms".into());
            }
        }
    }
    if let Some(f) = b.flapping
        && f.up_ms == 0
    {
        return Err("flapping up_ms must be above 0 (else the lender is simply down)".into());
    }
    if let Fault::Unavailable { every: 0 } = b.fault {
        return Err("unavailable every must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FANOUT: &str = r#"
name = "fanout-4"
rate_per_s = 2000
duration_s = 30
warmup_s = 5
[population]
kind = "all_lenders"
persons = 5000
[lenders]
count = 4
behaviour = { latency = { fixed = { ms = 20 } } }
"#;

    fn with(extra: &str) -> String {
        format!("{FANOUT}{extra}")
    }

    fn invalid_message(text: &str) -> String {
        match Scenario::from_toml(text, "test.toml") {
            Err(ScenarioError::Invalid { message, .. }) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_fan_out_scenario_parses_with_defaults() {
        let s = Scenario::from_toml(FANOUT, "fanout-4.toml").expect("valid scenario");
        assert_eq!(s.name, "fanout-4");
        assert_eq!(s.rate_per_s, 2000.0);
        assert_eq!(s.fixed_fan_out(), Some(4));
        assert_eq!(s.lenders.timeout_ms, 300);
        assert_eq!(s.lenders.threads, 2);
        assert_eq!(s.lenders.behaviour.latency, Latency::Fixed { ms: 20 });
        assert_eq!(s.population.seed, 42);
        assert_eq!(s.population.choice, Choice::Uniform);
        assert_eq!(s.broker.cache_ttl_ms, 0);
        assert_eq!(s.broker.max_time_to_wait_ms, 3000);
        assert!(s.events.is_empty());
    }

    #[test]
    fn events_zipf_and_broker_settings_parse() {
        let s = Scenario::from_toml(
            &with(
                r#"
[[events]]
at_s = 3.0
lender = 4
behaviour = { fault = "black_hole" }
[broker]
hedge = true
hedge_percentile = 90
breaker_failures = 5
"#,
            )
            .replace(
                "kind = \"all_lenders\"",
                "kind = \"demo\"\nchoice = { zipf = { s = 1.1 } }",
            ),
            "x",
        )
        .expect("valid scenario");
        assert_eq!(s.population.kind, PopulationKind::Demo);
        assert_eq!(s.population.choice, Choice::Zipf { s: 1.1 });
        assert_eq!(s.fixed_fan_out(), None);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].behaviour.fault, Fault::BlackHole);
        assert_eq!(s.first_event().map(|e| e.lender), Some(4));
        assert!(s.broker.hedge);
        assert_eq!(s.broker.hedge_percentile, Some(90.0));
        assert_eq!(s.broker.breaker_failures, Some(5));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_field_named() {
        let err = Scenario::from_toml(&FANOUT.replace("rate_per_s", "rate"), "typo.toml")
            .expect_err("typo accepted");
        let text = err.to_string();
        assert!(text.contains("typo.toml"), "{text}");
        assert!(text.contains("rate"), "{text}");
    }

    #[test]
    fn bad_values_are_refused_with_clear_messages() {
        assert!(invalid_message(&FANOUT.replace("2000", "0")).contains("rate_per_s"));
        assert!(
            invalid_message(&FANOUT.replace("duration_s = 30", "duration_s = -1"))
                .contains("duration_s")
        );
        assert!(
            invalid_message(&FANOUT.replace("count = 4", "count = 0")).contains("lenders.count")
        );
        assert!(
            invalid_message(&FANOUT.replace("persons = 5000", "persons = 0")).contains("persons")
        );
        assert!(invalid_message(&FANOUT.replace("fanout-4", "Fanout 4")).contains("name"));
        assert!(
            invalid_message(&FANOUT.replace("count = 4", "count = 4\nthreads = 0"))
                .contains("lenders.threads")
        );
        let event = |lender: usize, at: f64| {
            with(&format!(
                "[[events]]\nat_s = {at}\nlender = {lender}\nbehaviour = {{ fault = \"black_hole\" }}\n"
            ))
        };
        assert!(invalid_message(&event(5, 1.0)).contains("events[0].lender"));
        assert!(invalid_message(&event(0, 1.0)).contains("events[0].lender"));
        assert!(invalid_message(&event(1, 30.0)).contains("events[0].at_s"));
        let slow = FANOUT.replace(
            "{ fixed = { ms = 20 } }",
            "{ bimodal = { fast_ms = 20, slow_ms = 200, slow_fraction = 1.5 } }",
        );
        assert!(invalid_message(&slow).contains("slow_fraction"));
        assert!(
            invalid_message(&with("[broker]\nmax_time_to_wait_ms = 10\n"))
                .contains("max_time_to_wait_ms")
        );
    }

    #[test]
    fn the_shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("scenarios folder") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(s.name.as_str()),
                    path.file_stem().and_then(|n| n.to_str()),
                    "a scenario's name is its file name"
                );
                names.push(s.name);
            }
        }
        names.sort();
        for want in [
            "blackhole",
            "cache-hit",
            "demo-zipf",
            "fanout-1",
            "fanout-16",
            "fanout-4",
            "slow-tail",
            "slow-tail-hedged",
            "smoke",
        ] {
            assert!(names.iter().any(|n| n == want), "missing scenario {want}");
        }
    }
}
