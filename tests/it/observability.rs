//! Operations (issue 6): the dashboards and rules name only metrics a running
//! broker exposes, the rules pass promtool, `/metrics` never holds a national
//! id, and `/readyz` turns false when a lender's snapshot is older than the limit.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{Broker, Fixture, Options, PARTNER, token};
use serde_json::{Value, json};

const PRESENTATION: &str = "debt.unsecured.presentation";

fn dashboards_dir() -> PathBuf {
    common::manifest_path("dashboards")
}

/// The files in dashboards/ ending in `ext`, sorted.
fn dashboard_files(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// A broker with one lender down (so calls fail and fall back), after
/// searches, a consent lookup and a refused consent lookup: as many labelled
/// series as a short run can give. Returns the broker and the persons used.
async fn exercised_broker(fx: &Fixture) -> (Broker, Vec<String>) {
    let b = fx.broker().await;
    let mut persons = fx.persons_with_lenders(2);
    persons.truncate(6);
    assert!(!persons.is_empty(), "the population has indebted persons");
    for p in &persons {
        let r = b.search(p).await;
        assert!(r.status == 200 || r.status == 204, "search: {}", r.status);
    }
    // A consent, used once, then refused as spent.
    let tok = token(PARTNER, &["consent.create", PRESENTATION]);
    let r = b
        .put_json(
            "/v1/consent/agreement",
            &tok,
            &json!({"nin": persons[0], "scope_of_consent": PRESENTATION,
                    "consent_duration_days": 0, "client_consent_id": "obs-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "consent: {}", r.text());
    let id = r.json()["consent"]["id"]
        .as_str()
        .expect("consent id")
        .to_owned();
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 200);
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 403);
    (b, persons)
}

/// Metric family names in the exposition (`# TYPE name kind`), with their kind.
fn families(scrape: &str) -> Vec<(String, String)> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// PromQL-ish identifiers in `text`: runs of `[A-Za-z0-9_:]`.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| !t.is_empty())
}

/// The query strings of a Grafana dashboard: every `expr`, `query` and
/// `definition` string anywhere in it.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn dashboards_and_rules_name_only_exposed_metrics() {
    let fx = Fixture::new(Options {
        lenders: 4,
        persons: 200,
        seed: 61,
        down: vec![3],
        ..Options::default()
    })
    .await;
    let (b, _) = exercised_broker(&fx).await;
    let scrape = b.ops_get("/metrics").await;
    assert_eq!(scrape.status, 200);
    let scrape = scrape.text();
    let families = families(&scrape);
    let exposed: BTreeSet<&str> = families.iter().map(|(n, _)| n.as_str()).collect();
    let histograms: BTreeSet<&str> = families
        .iter()
        .filter(|(_, k)| k == "histogram")
        .map(|(n, _)| n.as_str())
        .collect();

    // Texts to check, and the recording rules they may use instead of metrics.
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    for f in dashboard_files("yml") {
        let text = std::fs::read_to_string(&f).expect("read rules");
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("- record:") {
                recorded.insert(name.trim().to_owned());
            }
        }
        // Comments, group names and annotations are prose, not queries.
        let queries: String = text
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !t.starts_with('#')
                    && !t.starts_with("- name:")
                    && !t.starts_with("summary:")
                    && !t.starts_with("description:")
                    && !t.starts_with("runbook_url:")
            })
            .collect::<Vec<_>>()
            .join("\n");
        texts.push((f.display().to_string(), queries));
    }
    let json_files = dashboard_files("json");
    assert!(!json_files.is_empty(), "a Grafana dashboard in dashboards/");
    for f in json_files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).expect("read"))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", f.display()));
        assert!(v["uid"].is_string(), "{} has a uid", f.display());
        let mut queries = Vec::new();
        dashboard_queries(&v, &mut queries);
        assert!(!queries.is_empty(), "{} has queries", f.display());
        texts.push((f.display().to_string(), queries.join("\n")));
    }
    assert!(!recorded.is_empty(), "recording rules exist");

    let mut checked = 0;
    let mut missing = Vec::new();
    for (file, text) in &texts {
        for id in identifiers(text) {
            if id.contains(':') {
                // A recording rule's output (level:metric:ops): must be defined.
                if id.contains("gjeldsbro_") && !recorded.contains(id) {
                    missing.push(format!("{file}: recording rule {id} is not defined"));
                }
                continue;
            }
            if !id.starts_with("gjeldsbro_") {
                continue;
            }
            checked += 1;
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| id.strip_suffix(s).filter(|b| histograms.contains(b)));
            if !exposed.contains(id) && base.is_none() {
                missing.push(format!("{file}: {id}"));
            }
        }
    }
    assert!(checked > 20, "the files name metrics ({checked} found)");
    assert!(
        missing.is_empty(),
        "named in dashboards/ but not exposed by a running broker:\n{}",
        missing.join("\n")
    );
}

#[tokio::test]
async fn metrics_hold_no_national_id() {
    let fx = Fixture::new(Options {
        lenders: 3,
        persons: 200,
        seed: 62,
        down: vec![2],
        ..Options::default()
    })
    .await;
    let (b, used) = exercised_broker(&fx).await;
    let scrape = b.ops_get("/metrics").await.text();
    assert!(scrape.contains("gjeldsbro_lender_calls_total"));
    for p in fx.pop.persons().iter().chain(used.iter()) {
        assert!(
            !scrape.contains(p.as_str()),
            "a national id appears in /metrics"
        );
    }
    // No 11-digit run at all, whatever its source (label values are ids,
    // org numbers of 9 digits, outcomes; numbers are sample values).
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        // The label set, if any: `name{...} value`; a value may well be long.
        let labels = match (line.find('{'), line.rfind('}')) {
            (Some(a), Some(b)) if a < b => &line[a..b],
            _ => "",
        };
        assert!(
            !labels
                .split(|c: char| !c.is_ascii_digit())
                .any(|run| run.len() >= 11),
            "an 11-digit number in a label: {line}"
        );
    }
}

#[tokio::test]
async fn readiness_turns_false_when_a_snapshot_is_too_old() {
    let fx = Fixture::new(Options {
        lenders: 3,
        persons: 100,
        seed: 63,
        ..Options::default()
    })
    .await;
    let b = fx
        .broker_with(|t| format!("{t}\n[readiness]\nmax_snapshot_age_hours = 24\n"))
        .await;
    // The detail is on the operations listener.
    let r = b.ops_get("/readyz").await;
    assert_eq!(r.status, 200, "fresh snapshots: {}", r.text());
    assert_eq!(r.json()["snapshots"], json!(true));

    // Make one lender's dataset 25 hours old, directly in the store.
    let stale = fx.specs[1].id.clone();
    let old = time::OffsetDateTime::now_utc() - time::Duration::hours(25);
    let old = old
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", fx.db_path.display()))
        .await
        .expect("connect");
    let n = sqlx::query("UPDATE datasets SET loaded_at = ? WHERE lender_id = ?")
        .bind(&old)
        .bind(&stale)
        .execute(&pool)
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(n, 1);

    let r = b.ops_get("/readyz").await;
    assert_eq!(r.status, 503, "a stale snapshot: {}", r.text());
    let body = r.json();
    assert_eq!(body["status"], json!("not_ready"));
    assert_eq!(body["store"], json!(true));
    assert_eq!(body["index"], json!(true));
    assert_eq!(body["snapshots"], json!(false));
    let listed: Vec<&str> = body["stale_snapshots"]
        .as_array()
        .expect("stale list")
        .iter()
        .filter_map(|s| s["lender"].as_str())
        .collect();
    assert_eq!(listed, vec![stale.as_str()]);
    // The public listener says the same, without naming the lender.
    let bare = b.get("/readyz").await;
    assert_eq!(bare.status, 503);
    assert_eq!(bare.json(), json!({"status": "not_ready"}));
    // Liveness is unaffected: the process is fine, its data is not.
    assert_eq!(b.get("/healthz").await.status, 200);

    // The age shows in the metrics too, for the SnapshotStale alert.
    let scrape = b.ops_get("/metrics").await.text();
    let age = scrape
        .lines()
        .find(|l| {
            l.starts_with("gjeldsbro_snapshot_age_seconds")
                && l.contains(&format!("lender=\"{stale}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("snapshot age of the stale lender");
    assert!(age >= 25.0 * 3600.0 - 60.0, "age {age}");

    // A new delivery makes it fresh again, and the broker ready.
    let i = 1;
    let bytes = serde_json::to_vec(&json!({
        "providerID": gjeldsbro_adapter::provider_id(&fx.specs[i].org_no),
        "customers": fx.pop.dataset(&fx.specs[i].id),
    }))
    .expect("json");
    b.state
        .ingestor
        .load_dataset(&stale, std::io::Cursor::new(bytes), "file", "itest", false)
        .await
        .expect("ingest");
    assert_eq!(b.ops_get("/readyz").await.status, 200);
    // The public status is reused for up to a second (anyone may call it).
    let ready = common::eventually(std::time::Duration::from_secs(10), || async {
        b.get("/readyz").await.status == 200
    })
    .await;
    assert!(ready, "the public /readyz never turned ready");
}

/// promtool (Debian's `prometheus` package) checks the rule files. Without it
/// the test skips with a reason, unless `GJELDSBRO_REQUIRE_PROMTOOL` or `CI` is
/// set (.ci/run sets the first and installs promtool): there a skip would hide
/// a broken rule.
#[test]
fn promtool_accepts_the_rules() {
    let files = dashboard_files("yml");
    assert!(files.len() >= 2, "alert and recording rules in dashboards/");
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .args(&files)
        .output()
    {
        Ok(out) => out,
        Err(e)
            if std::env::var_os("GJELDSBRO_REQUIRE_PROMTOOL").is_none()
                && std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipped: promtool not runnable ({e}); apt-get install prometheus");
            return;
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `name{lender="…"}` in a scrape.
fn lender_value(scrape: &str, name: &str, lender: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("lender=\"{lender}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_last_delivery_result_follows_the_store() {
    let fx = Fixture::new(Options {
        lenders: 2,
        persons: 50,
        seed: 64,
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let lender = fx.specs[0].id.clone();
    let scrape = b.ops_get("/metrics").await.text();
    assert_eq!(
        lender_value(&scrape, "gjeldsbro_delivery_last_result", &lender),
        Some(1.0)
    );
    assert!(lender_value(&scrape, "gjeldsbro_snapshot_rows", &lender).is_some_and(|n| n > 0.0));

    // A delivery from the wrong provider is rejected: the gauge says so, and
    // the dataset in force (and its rows) stays.
    let bytes = serde_json::to_vec(&json!({
        "providerID": gjeldsbro_adapter::provider_id(&fx.specs[1].org_no),
        "customers": fx.pop.dataset(&lender),
    }))
    .expect("json");
    let r = b
        .state
        .ingestor
        .load_dataset(&lender, std::io::Cursor::new(bytes), "file", "itest", true)
        .await;
    assert!(r.is_err(), "a delivery under another provider is rejected");
    let scrape = b.ops_get("/metrics").await.text();
    assert_eq!(
        lender_value(&scrape, "gjeldsbro_delivery_last_result", &lender),
        Some(0.0)
    );
    assert!(
        lender_value(
            &scrape,
            "gjeldsbro_delivery_last_timestamp_seconds",
            &lender
        )
        .is_some_and(|t| t > 1.7e9)
    );
}
