//! The HTTP paths of search, redaction, consent lookups and the disclosure log,
//! through the real broker on both stores: SQLite and PostgreSQL. Records are
//! read back through the store's own interface, so the same assertions hold for
//! both. PostgreSQL may be absent on a developer's machine (the second half is
//! skipped with the reason), never in CI (`GJELDSBRO_REQUIRE_PG=1`).

use crate::common;

use common::pg::{DropSchema, pg_schema};
use common::{Broker, FI, Fixture, LENDER_NAMES, Options, PARTNER, fi_token, token};
use gjeldsbro::audit::verify::{self, Verdict, VerifyOptions};
use serde_json::json;

const PRESENTATION: &str = "debt.unsecured.presentation";

/// A broker on SQLite and, when it is there, one on a fresh PostgreSQL schema;
/// both over the same simulated lenders and datasets.
async fn brokers(fx: &Fixture) -> Vec<(&'static str, Broker, Option<DropSchema>)> {
    let mut out = vec![("sqlite", fx.broker().await, None)];
    match pg_schema().await {
        Ok((guard, url)) => out.push(("postgres", fx.broker_on(&url).await, Some(guard))),
        Err(reason) => common::pg::skip(&reason),
    }
    out
}

async fn records(b: &Broker) -> Vec<gjeldsbro::audit::record::DisclosureRecord> {
    b.state
        .lookup
        .store
        .disclosures_after(0, 1_000)
        .await
        .expect("read the log")
        .into_iter()
        .map(|d| d.record)
        .collect()
}

async fn intact(b: &Broker) -> bool {
    let options = VerifyOptions {
        anchor: None,
        retention_cutoff: None,
    };
    matches!(
        verify::verify(&*b.state.lookup.store, &options).await,
        Ok(Verdict::Intact(_))
    )
}

/// A search answers the population's loans without a creditor's name anywhere,
/// and its disclosure is in the log, chained, before the answer arrived.
#[tokio::test(flavor = "multi_thread")]
async fn a_search_is_redacted_and_recorded_on_both_stores() {
    let fx = Fixture::new(Options::default()).await;
    let person = fx.persons_with_lenders(2)[0].clone();
    for (store, b, _schema) in brokers(&fx).await {
        let r = b
            .search_as(
                &fi_token(),
                &json!({"ssn": person, "referenceID": "both-stores"}),
            )
            .await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.loans(), fx.expected_loans(&person), "{store}");
        let mut visible = r.text();
        for (k, v) in &r.headers {
            visible.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        for name in LENDER_NAMES {
            assert!(!visible.contains(name), "{store}: {name} shown to a search");
        }
        assert!(!visible.contains("accountID"), "{store}");

        let recs = records(&b).await;
        assert_eq!(
            recs.len(),
            1,
            "{store}: one record, written before the answer"
        );
        let rec = &recs[0];
        assert_eq!(rec.purpose, "search", "{store}");
        assert_eq!(rec.recipient_org, FI, "{store}");
        assert_eq!(rec.reference_id, "both-stores", "{store}");
        assert_eq!(format!("{:011}", rec.nin), person, "{store}");
        assert_eq!(rec.letter_owed_by, "broker", "{store}");
        assert!(intact(&b).await, "{store}: the chain verifies");
    }
}

/// A consent lookup names the creditors, records one disclosure per use, and
/// another organisation gets the same 403 as for an id that does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn a_consent_lookup_names_creditors_and_is_recorded_on_both_stores() {
    let fx = Fixture::new(Options::default()).await;
    let person = fx.persons_with_lenders(2)[0].clone();
    let tok = token(PARTNER, &["consent.create", PRESENTATION]);
    for (store, b, _schema) in brokers(&fx).await {
        let r = b
            .put_json(
                "/v1/consent/agreement",
                &tok,
                &json!({"nin": person, "scope_of_consent": PRESENTATION,
                        "consent_duration_days": 30, "client_consent_id": "both-stores"}),
            )
            .await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        let id = r.json()["consent"]["id"].as_str().unwrap().to_owned();

        let r = b.get_as(&format!("/v1/debt/{id}"), &tok).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.loans(), fx.expected_loans(&person), "{store}");
        let names: Vec<&str> = fx
            .indexed_lenders(&person)
            .iter()
            .map(|&i| Fixture::lender_name(i))
            .collect();
        for entry in r.json()["loans"].as_array().unwrap() {
            let name = entry["creditorName"].as_str().expect("creditorName");
            assert!(names.contains(&name), "{store}: {name}");
        }

        let stranger = token(FI, &[PRESENTATION]);
        let theirs = b.get_as(&format!("/v1/debt/{id}"), &stranger).await;
        let nobodys = b
            .get_as("/v1/debt/00000000-0000-4000-8000-000000000000", &stranger)
            .await;
        assert_eq!(theirs.status, 403, "{store}");
        assert_eq!(theirs.status, nobodys.status, "{store}");
        assert_eq!(theirs.json()["error"], nobodys.json()["error"], "{store}");

        let recs = records(&b).await;
        assert_eq!(recs.len(), 1, "{store}: one use, one record");
        assert_eq!(recs[0].purpose, PRESENTATION, "{store}");
        assert_eq!(recs[0].recipient_org, PARTNER, "{store}");
        assert_eq!(recs[0].letter_owed_by, "none", "{store}");
        assert!(intact(&b).await, "{store}");
    }
}
