//! Student loans and debt-collection cases (issue 8): a real broker with an
//! API-DEBT-FI simulator, a student-loan saldo API (with its token endpoint) and
//! a collection agency. The person's own view shows them; a financial
//! institution's search neither shows them nor calls those lenders at all; a
//! presentation consent shows exactly the kinds it names. A `429 Too busy` from
//! the saldo API is the lender's limit: snapshot, outcome `limited`, and never
//! a breaker failure.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Fixture, Options, PARTNER, manifest_path, person_token, token};
use gjeldsbro_loadtest::SourceFault;
use gjeldsbro_loadtest::collection_sim::{CollectionSim, CollectionSimConfig, case};
use gjeldsbro_loadtest::student_loan_sim::{Saldo, StudentLoanSim, StudentLoanSimConfig};
use serde_json::{Value, json};

const PRESENTATION: &str = "debt.unsecured.presentation";
const PROCESSING: &str = "debt.unsecured.processing";
const STUDENT_ORG: &str = "960885406";
const STUDENT_NAME: &str = "Statens lånekasse for utdanning";
const AGENCY_ORG: &str = "930000001";
const AGENCY_NAME: &str = "NorKreditt AS";
const KID: &str = "gjeldsbro-dev-mp-1";
const CLIENT_ID: &str = "gjeldsbro-itest";
const MP_AUDIENCE: &str = "https://maskinporten.itest.example/";
const SCOPE: &str = "lanekassen:saldo";
const SALDO_KEY: &str = "itest-saldo-key";
const AGENCY_KEY: &str = "itest-agency-key";

struct World {
    fx: Fixture,
    students: StudentLoanSim,
    agency: CollectionSim,
    b: common::Broker,
    /// Register debt, a student loan and collection cases.
    all: String,
    /// A student loan only: unknown to every register lender.
    student_only: String,
}

fn types(debt_information: &Value) -> Vec<String> {
    debt_information["loans"]
        .as_array()
        .expect("loans")
        .iter()
        .filter_map(|e| e["loan"]["type"].as_str().map(str::to_owned))
        .collect()
}

fn entries_named<'a>(v: &'a Value, name: &str) -> Vec<&'a Value> {
    v["loans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["creditorName"] == json!(name))
        .collect()
}

async fn world() -> World {
    let fx = Fixture::new(Options {
        lenders: 2,
        persons: 60,
        ..Options::default()
    })
    .await;
    let all = fx.persons_with_lenders(1)[0].clone();
    let student_only = fx.persons_without_debt()[0].clone();

    let students = StudentLoanSim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        StudentLoanSimConfig {
            client_public_key_pem: std::fs::read(manifest_path(
                "config/dev-maskinporten-client-pub.pem",
            ))
            .unwrap(),
            kid: KID.into(),
            client_id: CLIENT_ID.into(),
            audience: MP_AUDIENCE.into(),
            scope: SCOPE.into(),
            api_key: SALDO_KEY.into(),
            token_lifetime: Duration::from_secs(120),
            saldos: HashMap::from([
                (all.clone(), Saldo::from_ore(31_234_567, 123_450, 7_000, 0)),
                (student_only.clone(), Saldo::from_ore(9_900_000, 0, 0, 0)),
            ]),
        },
    )
    .await
    .unwrap();
    let agency = CollectionSim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        CollectionSimConfig {
            org_no: AGENCY_ORG.into(),
            api_key: AGENCY_KEY.into(),
            cases: HashMap::from([(
                all.clone(),
                vec![
                    case("K-1", "active", 120_000, 3_400, 70_000),
                    case("K-2", "disputed", 50_000, 0, 0),
                    case("K-3", "closed", 0, 0, 0),
                ],
            )]),
        },
    )
    .await
    .unwrap();

    let key = manifest_path("config/dev-maskinporten-client-key.pem");
    let extra = format!(
        "\n[[lenders]]\nid = \"lanekassen\"\norg_no = \"{STUDENT_ORG}\"\nname = \"{STUDENT_NAME}\"\n\
         adapter = \"student-loans\"\nbase_url = \"{saldo}\"\ntimeout_ms = 2000\n\
         [lenders.settings]\ntoken_url = \"{token}\"\ntoken_audience = \"{MP_AUDIENCE}\"\n\
         client_id = \"{CLIENT_ID}\"\nscope = \"{SCOPE}\"\nkey_file = \"{key}\"\nkid = \"{KID}\"\n\
         api_key = \"{SALDO_KEY}\"\n\
         \n[[lenders]]\nid = \"norkreditt\"\norg_no = \"{AGENCY_ORG}\"\nname = \"{AGENCY_NAME}\"\n\
         adapter = \"debt-collection\"\nbase_url = \"{agency}\"\ntimeout_ms = 2000\n\
         [lenders.settings]\napi_key = \"{AGENCY_KEY}\"\n\
         \n[cache]\nttl_ms = 0\n",
        saldo = students.base_url(),
        token = students.token_url(),
        agency = agency.base_url(),
        key = key.display(),
    );
    let b = fx.broker_with(move |text| text + &extra).await;

    // The index learns who these sources hold through the ingest paths, as
    // for any lender (docs/architecture.md, "Other sources").
    let deliver = |lender: &'static str, org: &'static str, customers: Value| {
        let bytes = serde_json::to_vec(&json!({
            "providerID": gjeldsbro_adapter::provider_id(org),
            "customers": customers,
        }))
        .unwrap();
        let ingestor = b.state.ingestor.clone();
        async move {
            ingestor
                .load_dataset(lender, std::io::Cursor::new(bytes), "file", "itest", false)
                .await
                .expect("ingest")
        }
    };
    let saldo_row = |ore: i64| {
        json!({"type": "studentLoan", "accountID": "saldo", "timestamp": "2026-11-23",
               "principal": ore, "interest": 0, "fees": 0, "costs": 0})
    };
    deliver(
        "lanekassen",
        STUDENT_ORG,
        json!([
            {"customerID": all, "financialInstitutionID": STUDENT_ORG, "loans": [saldo_row(31_000_000)]},
            {"customerID": student_only, "financialInstitutionID": STUDENT_ORG, "loans": [saldo_row(9_900_000)]},
        ]),
    )
    .await;
    deliver(
        "norkreditt",
        AGENCY_ORG,
        json!([{"customerID": all, "financialInstitutionID": AGENCY_ORG, "loans": [
            {"type": "collectionCase", "accountID": "K-1", "principal": 120000, "interest": 0,
             "fees": 0, "status": "active"}]}]),
    )
    .await;
    World {
        fx,
        students,
        agency,
        b,
        all,
        student_only,
    }
}

fn reset(w: &World) {
    w.fx.reset_stats();
    w.students.reset_stats();
    w.agency.reset_stats();
}

#[tokio::test]
async fn the_own_view_shows_student_loans_and_collection_cases() {
    let w = world().await;
    let r = w.b.get_as("/v1/me/debt", &person_token(&w.all)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();

    let student = entries_named(&v, STUDENT_NAME);
    assert_eq!(student.len(), 1, "{v}");
    assert_eq!(
        student[0]["loan"],
        // The saldo date, in the one form answers write timestamps in.
        json!({"type": "studentLoan", "timestamp": "2026-11-24T00:00:00Z", "principal": 31_234_567,
               "interest": 123_450, "fees": 7_000, "costs": 0}),
        "live saldo, split, no accountID"
    );
    let cases = entries_named(&v, AGENCY_NAME);
    assert_eq!(cases.len(), 2, "the closed case is not shown: {v}");
    assert_eq!(cases[0]["loan"]["status"], "active");
    assert_eq!(cases[0]["loan"]["principal"], 120_000);
    assert_eq!(cases[1]["loan"]["status"], "disputed");
    // The register's loans are unchanged by the new sources.
    let register: Vec<Value> = common::loans_of(&v)
        .into_iter()
        .filter(|l| l["type"] != "studentLoan" && l["type"] != "collectionCase")
        .collect();
    assert_eq!(register, w.fx.expected_loans(&w.all));

    // The headers reached the saldo API as it wants them.
    assert_eq!(w.students.saldo_refused(), 0);
    assert_eq!(w.students.tokens_refused(), 0);
    let seen = w.students.last_seen().unwrap();
    assert_eq!(seen.psu_id, w.all);
    assert_eq!(seen.api_key, SALDO_KEY);
    assert!(!seen.authorization.starts_with("Bearer"));
    assert_eq!(w.agency.refused(), 0);
}

#[tokio::test]
async fn a_search_neither_shows_nor_calls_the_other_sources() {
    let w = world().await;
    reset(&w);
    // A financial institution's search (common::fi_token).
    let r = w.b.search(&w.all).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = types(&r.json());
    assert!(!t.is_empty());
    assert!(
        t.iter()
            .all(|x| x != "studentLoan" && x != "collectionCase"),
        "{t:?}"
    );
    assert_eq!(
        r.json()["numberOfCreditorsAnswered"],
        json!(w.fx.indexed_lenders(&w.all).len()),
        "the other sources are not counted either"
    );
    assert!(
        w.fx.total_customer_calls() > 0,
        "register lenders were asked"
    );
    assert_eq!(
        w.students.saldo_calls(),
        0,
        "the student-loan lender never heard of it"
    );
    assert_eq!(w.students.token_requests(), 0);
    assert_eq!(w.agency.calls(), 0, "nor did the agency");

    // Held by a student-loan lender only: no debt in the register's sense.
    let r = w.b.search(&w.student_only).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(w.students.saldo_calls(), 0);

    // Nor through a processing consent, which cannot name other kinds.
    let tok = token(PARTNER, &["consent.create", PRESENTATION, PROCESSING]);
    let r =
        w.b.put_json(
            "/v1/consent/agreement",
            &tok,
            &json!({"nin": w.all, "scope_of_consent": format!("{PROCESSING} debt.student_loans"),
                    "consent_duration_days": 7, "client_consent_id": "proc-1"}),
        )
        .await;
    r.assert_error(400);
}

async fn consent(w: &World, scope: &str, cid: &str) -> Value {
    let tok = token(PARTNER, &["consent.create", PRESENTATION]);
    let r =
        w.b.put_json(
            "/v1/consent/agreement",
            &tok,
            &json!({"nin": w.all, "scope_of_consent": scope, "consent_duration_days": 30,
                    "client_consent_id": cid}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["consent"]["id"].as_str().unwrap().to_owned();
    let r = w.b.get_as(&format!("/v1/debt/{id}"), &tok).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn a_presentation_consent_shows_exactly_the_kinds_it_names() {
    let w = world().await;
    reset(&w);
    let plain = consent(&w, PRESENTATION, "plain").await;
    let t = types(&plain);
    assert!(
        t.iter()
            .all(|x| x != "studentLoan" && x != "collectionCase"),
        "{t:?}"
    );
    assert_eq!(w.students.saldo_calls(), 0);
    assert_eq!(w.agency.calls(), 0);

    let named = consent(&w, &format!("{PRESENTATION} debt.student_loans"), "student").await;
    assert_eq!(
        named["consent"]["scope"],
        json!(format!("{PRESENTATION} debt.student_loans"))
    );
    let students = entries_named(&named, STUDENT_NAME);
    assert_eq!(students.len(), 1, "{named}");
    assert_eq!(students[0]["loan"]["principal"], 31_234_567);
    assert!(entries_named(&named, AGENCY_NAME).is_empty());
    assert_eq!(w.students.saldo_calls(), 1);
    assert_eq!(w.agency.calls(), 0, "collection cases were not named");

    let both = consent(
        &w,
        &format!("{PRESENTATION} debt.debt_collection debt.student_loans"),
        "both",
    )
    .await;
    assert_eq!(entries_named(&both, STUDENT_NAME).len(), 1);
    assert_eq!(entries_named(&both, AGENCY_NAME).len(), 2);
    assert_eq!(w.agency.calls(), 1);
}

#[tokio::test]
async fn too_busy_is_the_lenders_limit_not_a_failure() {
    let w = world().await;
    w.students.set_fault(SourceFault::TooBusy);
    reset(&w);
    // More 429s than the breaker's five consecutive failures.
    for _ in 0..7 {
        let r = w.b.get_as("/v1/me/debt", &person_token(&w.all)).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let s = entries_named(&v, STUDENT_NAME);
        assert_eq!(s.len(), 1, "the snapshot answers: {v}");
        assert_eq!(s[0]["loan"]["principal"], 31_000_000, "the delivered row");
        assert_eq!(
            s[0]["loan"]["timestamp"], "2026-11-23T00:00:00Z",
            "its age shows"
        );
    }
    assert_eq!(w.students.saldo_calls(), 7, "every call reached the lender");
    let metrics = w.b.ops_get("/metrics").await.text();
    assert!(
        metrics
            .contains("gjeldsbro_lender_calls_total{lender=\"lanekassen\",outcome=\"limited\"} 7"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("lanekassen"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("gjeldsbro_lender_circuit_state{lender=\"lanekassen\"} 0"));

    w.students.set_fault(SourceFault::None);
    let v =
        w.b.get_as("/v1/me/debt", &person_token(&w.all))
            .await
            .json();
    assert_eq!(
        entries_named(&v, STUDENT_NAME)[0]["loan"]["principal"],
        31_234_567
    );
}

#[tokio::test]
async fn a_register_lender_cannot_deliver_another_kind() {
    let w = world().await;
    let spec = &w.fx.specs[0];
    let bytes = serde_json::to_vec(&json!({
        "providerID": gjeldsbro_adapter::provider_id(&spec.org_no),
        "customers": [{"customerID": w.student_only, "financialInstitutionID": spec.org_no,
            "loans": [{"type": "studentLoan", "accountID": "x", "principal": 1, "interest": 0,
                       "fees": 0, "costs": 0}]}],
    }))
    .unwrap();
    let r =
        w.b.state
            .ingestor
            .load_dataset(
                &spec.id,
                std::io::Cursor::new(bytes),
                "file",
                "itest",
                false,
            )
            .await;
    assert!(r.is_err(), "refused whole");
}
