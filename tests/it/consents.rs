//! The consent API end to end (issue 5): creation with durations and
//! idempotency, lookups under a consent, the owner-only rule (BOLA), the
//! one-time spend under concurrency, withdrawn/expired/spent consents, the
//! consent feed, and the disclosure record written with each use.

use crate::common;

use common::{FI, Fixture, Options, PARTNER, Resp, STRANGER, person_token, token};
use serde_json::{Value, json};
use sqlx::Row;
use time::OffsetDateTime;

const PRESENTATION: &str = "debt.unsecured.presentation";
const PROCESSING: &str = "debt.unsecured.processing";
const AGREEMENT: &str = "/v1/consent/agreement";

fn partner_token() -> String {
    token(
        PARTNER,
        &[
            "consent.create",
            PRESENTATION,
            PROCESSING,
            "client.access.consent.events",
        ],
    )
}

fn fi_consent_token() -> String {
    token(
        FI,
        &[
            "consent.create",
            PRESENTATION,
            PROCESSING,
            "client.access.consent.events",
        ],
    )
}

async fn agree(
    b: &common::Broker,
    tok: &str,
    nin: &str,
    scope: &str,
    days: i64,
    cid: &str,
) -> Resp {
    b.put_json(
        AGREEMENT,
        tok,
        &json!({"nin": nin, "scope_of_consent": scope, "consent_duration_days": days, "client_consent_id": cid}),
    )
    .await
}

/// Creates a consent and returns its id.
async fn consent_id(
    b: &common::Broker,
    tok: &str,
    nin: &str,
    scope: &str,
    days: i64,
    cid: &str,
) -> String {
    let r = agree(b, tok, nin, scope, days, cid).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["consent"]["id"].as_str().unwrap().to_owned()
}

/// The error body without the parts that differ per request.
fn without_time_and_trace(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("timestamp");
    o.remove("trace_id");
    v
}

fn expires_in_secs(r: &Resp) -> i64 {
    let at = r.json()["consent"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).unwrap();
    (t - OffsetDateTime::now_utc()).whole_seconds()
}

async fn db(fx: &Fixture) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", fx.db_path.display()))
        .await
        .unwrap()
}

async fn count(fx: &Fixture, sql: &'static str) -> i64 {
    let pool = db(fx).await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn assert_no_person_id(r: &Resp, nin: &str) {
    assert!(
        !r.text().contains(nin),
        "a national id in the answer: {}",
        r.text()
    );
    for (k, v) in &r.headers {
        assert!(
            !String::from_utf8_lossy(v.as_bytes()).contains(nin),
            "in header {k}"
        );
    }
}

#[tokio::test]
async fn durations_are_cut_and_zero_means_one_use_within_ten_minutes() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let tok = partner_token();

    let r = agree(&b, &tok, &p, PRESENTATION, 1000, "long-presentation").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["client_consent_id"], json!("long-presentation"));
    assert_eq!(v["consent"]["scope_of_consent"], json!(PRESENTATION));
    let secs = expires_in_secs(&r);
    assert!(
        (365 * 86400 - 60..=365 * 86400).contains(&secs),
        "cut to 365 days: {secs}"
    );

    let r = agree(&b, &tok, &p, PROCESSING, 365, "long-processing").await;
    let secs = expires_in_secs(&r);
    assert!(
        (28 * 86400 - 60..=28 * 86400).contains(&secs),
        "cut to 28 days: {secs}"
    );

    let r = agree(&b, &tok, &p, PROCESSING, 7, "week").await;
    let secs = expires_in_secs(&r);
    assert!(
        (7 * 86400 - 60..=7 * 86400).contains(&secs),
        "7 days as asked: {secs}"
    );

    // 0 (and an absent duration): one use within ten minutes.
    let r = agree(&b, &tok, &p, PRESENTATION, 0, "once").await;
    let secs = expires_in_secs(&r);
    assert!((540..=600).contains(&secs), "ten minutes: {secs}");
    let once = r.json()["consent"]["id"].as_str().unwrap().to_owned();
    let r = b
        .put_json(
            AGREEMENT,
            &tok,
            &json!({"nin": p, "scope_of_consent": PRESENTATION, "client_consent_id": "absent"}),
        )
        .await;
    assert!((540..=600).contains(&expires_in_secs(&r)));

    let status = b.get_as(&format!("/v1/debt/{once}/status"), &tok).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["active"], json!(true));
    assert_eq!(
        b.get_as(&format!("/v1/debt/{once}"), &tok).await.status,
        200
    );
    let again = b.get_as(&format!("/v1/debt/{once}"), &tok).await;
    let e = again.assert_error(403);
    assert!(
        e["error_description"].as_str().unwrap().contains("one use"),
        "{e}"
    );
    let status = b.get_as(&format!("/v1/debt/{once}/status"), &tok).await;
    assert_eq!(status.json()["active"], json!(false));

    // Ten minutes later (the stored times moved back 11 minutes: no sleeping),
    // an unused one-time consent has expired.
    let later = consent_id(&b, &tok, &p, PRESENTATION, 0, "once-expiring").await;
    let pool = db(&fx).await;
    let past = |m: i64| {
        gjeldsbro::time::format_fixed(OffsetDateTime::now_utc() - time::Duration::minutes(m))
    };
    sqlx::query("UPDATE consents SET created_at = ?, ends_at = ? WHERE id = ?")
        .bind(past(11))
        .bind(past(1))
        .bind(&later)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    fx.reset_stats();
    let disclosures = count(&fx, "SELECT COUNT(*) FROM disclosures").await;
    let r = b.get_as(&format!("/v1/debt/{later}"), &tok).await;
    let e = r.assert_error(403);
    assert!(
        e["error_description"].as_str().unwrap().contains("expired"),
        "{e}"
    );
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "no lender asked for an expired consent"
    );
    assert_eq!(
        count(&fx, "SELECT COUNT(*) FROM disclosures").await,
        disclosures
    );
    let status = b.get_as(&format!("/v1/debt/{later}/status"), &tok).await;
    assert_eq!(status.json()["active"], json!(false));
}

#[tokio::test]
async fn creation_is_idempotent_on_client_consent_id_and_checks_its_input() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let people = fx.persons_with_lenders(1);
    let (p, q) = (people[0].clone(), people[1].clone());
    let tok = partner_token();

    let first = agree(&b, &tok, &p, PRESENTATION, 90, "case-7").await;
    assert_eq!(first.status, 200);
    let same = agree(&b, &tok, &p, PRESENTATION, 90, "case-7").await;
    assert_eq!(same.status, 200);
    assert_eq!(same.json(), first.json(), "the same consent again");
    for (nin, scope, days) in [
        (&q, PRESENTATION, 90),
        (&p, PROCESSING, 90),
        (&p, PRESENTATION, 30),
    ] {
        let r = agree(&b, &tok, nin, scope, days, "case-7").await;
        let e = r.assert_error(409);
        assert_eq!(e["error"], json!("conflict"));
        assert_no_person_id(&r, nin);
    }
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM consents").await, 1);
    // Another organisation's client ids are its own.
    assert_eq!(
        agree(&b, &fi_consent_token(), &q, PROCESSING, 5, "case-7")
            .await
            .status,
        200
    );

    // Bad input: 400 with the error JSON, never the id in the text.
    let bad_nin = format!("{}0", &p[..10]);
    for body in [
        json!({"scope_of_consent": PRESENTATION, "consent_duration_days": 1, "client_consent_id": "x"}),
        json!({"nin": bad_nin, "scope_of_consent": PRESENTATION, "consent_duration_days": 1, "client_consent_id": "x"}),
        json!({"nin": p, "scope_of_consent": "search", "consent_duration_days": 1, "client_consent_id": "x"}),
        json!({"nin": p, "consent_duration_days": 1, "client_consent_id": "x"}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": -1, "client_consent_id": "x"}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": "ten", "client_consent_id": "x"}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": 1}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": 1, "client_consent_id": ""}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": 1, "client_consent_id": format!("ref-{p}")}),
        json!({"nin": p, "scope_of_consent": PRESENTATION, "consent_duration_days": 1, "client_consent_id": "x".repeat(101)}),
        json!([p]),
    ] {
        let r = b.put_json(AGREEMENT, &tok, &body).await;
        r.assert_error(400);
        assert_no_person_id(&r, &p);
    }
    let r = b
        .post_raw(AGREEMENT, Some(&tok), b"{not json".to_vec(), &[])
        .await;
    assert_eq!(r.status, 405, "PUT only");
    let r = b
        .client
        .put(format!("{}{AGREEMENT}", b.url))
        .bearer_auth(&tok)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    Resp::from(r).await.assert_error(415);

    // Who may create what.
    let body = |scope: &str| json!({"nin": p, "scope_of_consent": scope, "consent_duration_days": 1, "client_consent_id": "who"});
    let no_scope = token(PARTNER, &[PRESENTATION]);
    b.put_json(AGREEMENT, &no_scope, &body(PRESENTATION))
        .await
        .assert_error(403);
    b.put_json(AGREEMENT, &fi_consent_token(), &body(PRESENTATION))
        .await
        .assert_error(403);
    b.put_json(
        AGREEMENT,
        &token(STRANGER, &["consent.create"]),
        &body(PROCESSING),
    )
    .await
    .assert_error(403);
    b.put_json(AGREEMENT, &person_token(&p), &body(PRESENTATION))
        .await
        .assert_error(403);
    let r = b
        .send(
            reqwest::Method::PUT,
            AGREEMENT,
            None,
            Some(&body(PRESENTATION)),
        )
        .await;
    r.assert_error(401);
}

#[tokio::test]
async fn a_consent_lookup_shows_creditor_names_and_records_one_disclosure() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(2)[0].clone();
    let tok = partner_token();
    let id = consent_id(&b, &tok, &p, PRESENTATION, 30, "show-names").await;

    let r = b.get_as(&format!("/v1/debt/{id}"), &tok).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ssn"], json!(p));
    assert_eq!(v["consent"]["id"], json!(id));
    assert_eq!(v["consent"]["scope"], json!(PRESENTATION));
    let exp = v["consent"]["exp"].as_i64().unwrap();
    let in_30_days = OffsetDateTime::now_utc().unix_timestamp() + 30 * 86400;
    assert!((in_30_days - 60..=in_30_days).contains(&exp), "exp {exp}");
    assert_eq!(r.loans(), fx.expected_loans(&p));
    let expected_names: Vec<&str> = fx
        .indexed_lenders(&p)
        .iter()
        .map(|&i| Fixture::lender_name(i))
        .collect();
    for entry in v["loans"].as_array().unwrap() {
        let name = entry["creditorName"].as_str().expect("creditorName shown");
        assert!(expected_names.contains(&name), "{name}");
    }
    assert!(!r.text().contains("accountID"));

    let pool = db(&fx).await;
    let rows = sqlx::query(
        "SELECT purpose, recipient_org, reference_id, letter_owed_by, query_id FROM disclosures",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>(0), PRESENTATION);
    assert_eq!(rows[0].get::<String, _>(1), PARTNER);
    assert_eq!(rows[0].get::<String, _>(2), "show-names");
    assert_eq!(
        rows[0].get::<String, _>(3),
        "none",
        "no copy letter for consent lookups"
    );
    let uses = sqlx::query("SELECT outcome, query_id, by_org FROM consent_uses")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].get::<String, _>(0), "disclosed");
    assert_eq!(
        uses[0].get::<String, _>(1),
        rows[0].get::<String, _>(4),
        "the use names its record"
    );
    pool.close().await;

    // A lasting consent can be used again; every use is recorded.
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 200);
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM disclosures").await, 2);
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM consent_uses").await, 2);

    // A person no lender holds: 200 with no loans, recorded all the same.
    let nobody = fx.persons_without_debt()[0].clone();
    let none = consent_id(&b, &tok, &nobody, PRESENTATION, 1, "no-debt").await;
    fx.reset_stats();
    let r = b.get_as(&format!("/v1/debt/{none}"), &tok).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["loans"], json!([]));
    assert_eq!(r.json()["numberOfCreditorsAnswered"], json!(0));
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "nobody is asked about a person no lender holds"
    );
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM disclosures").await, 3);

    // The scope of the consent is needed to use it, and a malformed id is 400.
    b.get_as(&format!("/v1/debt/{id}"), &token(PARTNER, &[PROCESSING]))
        .await
        .assert_error(403);
    b.get_as("/v1/debt/not-a-consent", &tok)
        .await
        .assert_error(400);
    b.get_as(&format!("/v1/debt/{id}"), &person_token(&p))
        .await
        .assert_error(403);
}

/// Another organisation using a consent id gets exactly what it gets for an id
/// nobody issued, on every endpoint, and learns nothing; no lender is asked.
#[tokio::test]
async fn another_organisation_gets_the_same_403_as_for_an_id_that_does_not_exist() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let owner = partner_token();
    // A processing consent: the FI holds a role and the scope that could use one.
    let id = consent_id(&b, &owner, &p, PROCESSING, 10, "bola").await;
    let nobodys = uuid::Uuid::new_v4().to_string();
    let other = fi_consent_token();

    fx.reset_stats();
    for (method, suffix) in [
        (reqwest::Method::GET, ""),
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::DELETE, ""),
    ] {
        let theirs = b
            .send(
                method.clone(),
                &format!("/v1/debt/{id}{suffix}"),
                Some(&other),
                None,
            )
            .await;
        let none = b
            .send(
                method.clone(),
                &format!("/v1/debt/{nobodys}{suffix}"),
                Some(&other),
                None,
            )
            .await;
        let a = theirs.assert_error(403);
        let n = none.assert_error(403);
        assert_eq!(
            without_time_and_trace(a),
            without_time_and_trace(n),
            "{method} {suffix}"
        );
        let names = |r: &Resp| {
            let mut v: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&theirs),
            names(&none),
            "{method} {suffix}: headers differ"
        );
        assert!(!theirs.text().contains(&p) && !theirs.text().contains(PARTNER));
        // The owner's own view of a nonexistent id is the same 403 too.
        let own_none = b
            .send(
                method.clone(),
                &format!("/v1/debt/{nobodys}{suffix}"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(
            without_time_and_trace(own_none.assert_error(403)),
            without_time_and_trace(none.json())
        );
    }
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "no lender asked for a foreign consent"
    );
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM disclosures").await, 0);
    assert_eq!(
        count(&fx, "SELECT COUNT(*) FROM consent_uses").await,
        0,
        "not recorded as a use"
    );
    // The other organisation's DELETE did nothing.
    let s = b.get_as(&format!("/v1/debt/{id}/status"), &owner).await;
    assert_eq!(s.json()["active"], json!(true));
    assert_eq!(
        b.get_as(&format!("/v1/debt/{id}"), &owner).await.status,
        200
    );

    // Feeds: each client sees its own events only, numbered from 1.
    let fi_id = consent_id(&b, &other, &p, PROCESSING, 3, "fi-own").await;
    let feed = b
        .get_as("/feed/v1/consent?fromSequenceNr=0&limit=100", &owner)
        .await;
    assert_eq!(feed.status, 200, "{}", feed.text());
    let ev = feed.json()["events"].as_array().unwrap().clone();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["consentId"], json!(id));
    assert_eq!(ev[0]["sequenceNr"], json!(1));
    assert_eq!(ev[0]["type"], json!("created"));
    assert!(!feed.text().contains(&p), "no national id in the feed");
    let theirs = b.get_as("/feed/v1/consent", &other).await.json();
    let ev = theirs["events"].as_array().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (
            ev[0]["consentId"].as_str().unwrap(),
            ev[0]["sequenceNr"].as_i64().unwrap()
        ),
        (fi_id.as_str(), 1)
    );
    // Without the feed scope: 403; bad parameters: 400.
    b.get_as("/feed/v1/consent", &token(PARTNER, &["consent.create"]))
        .await
        .assert_error(403);
    b.get_as("/feed/v1/consent?fromSequenceNr=x", &owner)
        .await
        .assert_error(400);
    b.get_as("/feed/v1/consent?limit=0", &owner)
        .await
        .assert_error(400);
    b.get_as("/feed/v1/consent?limit=100000", &owner)
        .await
        .assert_error(400);
    b.get_as("/feed/v1/consent?fromSequenceNr=-1", &owner)
        .await
        .assert_error(400);
}

/// Twenty concurrent lookups under one one-time consent: exactly one answer,
/// the rest 403; exactly one use and one disclosure recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_consent_answers_exactly_one_of_twenty_concurrent_lookups() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(2)[0].clone();
    let tok = partner_token();
    let id = consent_id(&b, &tok, &p, PRESENTATION, 0, "race").await;
    let path = format!("/v1/debt/{id}");
    let results = futures::future::join_all((0..20).map(|_| b.get_as(&path, &tok))).await;
    let ok: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    let refused = results.iter().filter(|r| r.status == 403).count();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused, 19);
    assert_eq!(ok[0].loans(), fx.expected_loans(&p));
    for r in results.iter().filter(|r| r.status == 403) {
        assert!(
            !r.text().contains("loans"),
            "a refused lookup disclosed: {}",
            r.text()
        );
    }
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM disclosures").await, 1);
    assert_eq!(
        count(
            &fx,
            "SELECT COUNT(*) FROM consent_uses WHERE outcome = 'disclosed'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &fx,
            "SELECT COUNT(*) FROM consent_uses WHERE outcome = 'refused'"
        )
        .await,
        19
    );
}

/// The same race through the broker on PostgreSQL (skipped with the reason
/// when it is not reachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_one_time_consent_answers_exactly_one_of_twenty_concurrent_lookups() {
    let (_schema, pg_url) = match common::pg::pg_schema().await {
        Ok(s) => s,
        Err(reason) => {
            common::pg::skip(&reason);
            return;
        }
    };
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker_on(&pg_url).await;
    let p = fx.persons_with_lenders(2)[0].clone();
    let tok = partner_token();
    let id = consent_id(&b, &tok, &p, PRESENTATION, 0, "pg-race").await;
    let path = format!("/v1/debt/{id}");
    let results = futures::future::join_all((0..20).map(|_| b.get_as(&path, &tok))).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        19,
        "{statuses:?}"
    );
    let pool = sqlx::PgPool::connect(&pg_url).await.unwrap();
    let n = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(n("SELECT COUNT(*) FROM disclosures").await, 1);
    assert_eq!(
        n("SELECT COUNT(*) FROM consent_uses WHERE outcome = 'disclosed'").await,
        1
    );
    // Another organisation's attempt on PostgreSQL: the same 403 as for no consent.
    let other = fi_consent_token();
    let theirs = b.get_as(&path, &other).await;
    let none = b
        .get_as(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), &other)
        .await;
    assert_eq!(
        without_time_and_trace(theirs.assert_error(403)),
        without_time_and_trace(none.assert_error(403))
    );
    pool.close().await;
}

#[tokio::test]
async fn withdrawn_consents_disclose_nothing_and_show_in_the_feed() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let tok = partner_token();
    let id = consent_id(&b, &tok, &p, PRESENTATION, 100, "to-delete").await;
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 200);

    let r = b.delete_as(&format!("/v1/debt/{id}"), &tok).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        b.delete_as(&format!("/v1/debt/{id}"), &tok).await.status,
        204,
        "again: still 204"
    );
    fx.reset_stats();
    let r = b.get_as(&format!("/v1/debt/{id}"), &tok).await;
    let e = r.assert_error(403);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("withdrawn"),
        "{e}"
    );
    assert_eq!(fx.total_customer_calls(), 0);
    assert_eq!(
        count(&fx, "SELECT COUNT(*) FROM disclosures").await,
        1,
        "only the first use"
    );
    assert_eq!(
        b.get_as(&format!("/v1/debt/{id}/status"), &tok)
            .await
            .json()["active"],
        json!(false)
    );
    let feed = b.get_as("/feed/v1/consent", &tok).await.json();
    let kinds: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["created", "archived"]);
    assert_eq!(feed["nextSequenceNr"], json!(3));
    let rest = b
        .get_as("/feed/v1/consent?fromSequenceNr=2&limit=10", &tok)
        .await
        .json();
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
}

/// No record, no answer: if the disclosure cannot be written the lookup is 503,
/// discloses nothing, and the one-time consent is not spent.
#[tokio::test]
async fn a_consent_lookup_that_cannot_be_recorded_discloses_nothing() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let tok = partner_token();
    let id = consent_id(&b, &tok, &p, PRESENTATION, 0, "unrecorded").await;
    let pool = db(&fx).await;
    sqlx::query("ALTER TABLE disclosures RENAME TO disclosures_away")
        .execute(&pool)
        .await
        .unwrap();
    let r = b.get_as(&format!("/v1/debt/{id}"), &tok).await;
    let e = r.assert_error(503);
    assert_eq!(e["error"], json!("service_unavailable"));
    assert!(
        !r.text().contains("loans") && !r.text().contains(&p),
        "{}",
        r.text()
    );
    sqlx::query("ALTER TABLE disclosures_away RENAME TO disclosures")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM consent_uses").await, 0);
    // Not spent: the one use is still there.
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 200);
    assert_eq!(count(&fx, "SELECT COUNT(*) FROM disclosures").await, 1);
}
