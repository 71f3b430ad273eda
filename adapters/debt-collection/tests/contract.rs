//! Contract tests of the debt-collection adapter against the simulated agency
//! (`gjeldsbro_loadtest::collection_sim`): cases in, canonical collection cases
//! out; empty, malformed and failed answers; 429; headers checked at the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gjeldsbro_adapter::nin::make_id;
use gjeldsbro_adapter::{
    AdapterError, CaseStatus, CustomerQuery, DebtKind, IdPolicy, LenderAdapter, LenderSetup,
    LoanType, NationalId, SetupError,
};
use gjeldsbro_loadtest::SourceFault;
use gjeldsbro_loadtest::collection_sim::{CollectionSim, CollectionSimConfig, case};
use serde_json::json;

const ORG: &str = "930000001";
const API_KEY: &str = "agency-key";

fn id(individual: u32) -> String {
    (individual..individual + 20)
        .find_map(|i| make_id(2, 2, 85, i, false, true))
        .expect("a synthetic id")
}

async fn sim(cases: HashMap<String, Vec<serde_json::Value>>) -> CollectionSim {
    CollectionSim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        CollectionSimConfig {
            org_no: ORG.into(),
            api_key: API_KEY.into(),
            cases,
        },
    )
    .await
    .unwrap()
}

fn build(
    base_url: &str,
    org_no: &str,
    settings: &serde_json::Value,
) -> Result<Arc<dyn LenderAdapter>, SetupError> {
    let resolve = |p: &Path| PathBuf::from(p);
    let setup = LenderSetup {
        id: "norkreditt",
        org_no,
        base_url,
        timeout: Duration::from_secs(2),
        max_answer_bytes: 64 * 1024,
        settings,
        resolve: &resolve,
        allow_plain_http: true,
    };
    gjeldsbro_debt_collection::from_setup(&setup, reqwest::Client::new())
}

async fn ask(
    a: &dyn LenderAdapter,
    person: &str,
) -> Result<Vec<gjeldsbro_adapter::Loan>, AdapterError> {
    a.fetch_customer(CustomerQuery {
        nin: NationalId::parse(person, IdPolicy::SYNTHETIC_OK).unwrap(),
        trace_id: "trace-1",
        traceparent: None,
    })
    .await
}

#[tokio::test]
async fn cases_become_collection_cases() {
    let person = id(10);
    let s = sim(HashMap::from([(
        person.clone(),
        vec![
            case("K-1", "active", 120_000, 3_400, 70_000),
            case("K-2", "paymentPlan", 50_000, 0, 3_500),
            case("K-3", "disputed", 9_900, 0, 0),
            case("K-4", "closed", 0, 0, 0),
        ],
    )]))
    .await;
    let a = build(&s.base_url(), ORG, &json!({"api_key": API_KEY})).unwrap();
    assert_eq!(a.protocol(), "debt-collection");
    assert_eq!(a.kind(), DebtKind::DebtCollection);
    let loans = ask(a.as_ref(), &person).await.expect("answer");
    assert_eq!(loans.len(), 4);
    assert!(
        loans
            .iter()
            .all(|l| l.loan_type == LoanType::CollectionCase)
    );
    assert_eq!(
        loans.iter().map(|l| l.status).collect::<Vec<_>>(),
        [
            CaseStatus::Active,
            CaseStatus::PaymentPlan,
            CaseStatus::Disputed,
            CaseStatus::Closed
        ]
        .map(Some)
    );
    assert_eq!(
        (loans[0].principal, loans[0].interest, loans[0].fees),
        (Some(120_000), Some(3_400), Some(70_000))
    );
    assert!(loans[3].is_closed());
    assert_eq!(s.refused(), 0, "the headers passed the server's checks");
    assert!(s.last_request_id().is_some_and(|r| r.len() == 36));
}

#[tokio::test]
async fn no_cases_is_empty() {
    let s = sim(HashMap::new()).await;
    let a = build(&s.base_url(), ORG, &json!({"api_key": API_KEY})).unwrap();
    assert!(ask(a.as_ref(), &id(20)).await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_errors_and_429() {
    let person = id(30);
    let s = sim(HashMap::from([(
        person.clone(),
        vec![case("K", "active", 1, 0, 0)],
    )]))
    .await;
    let a = build(&s.base_url(), ORG, &json!({"api_key": API_KEY})).unwrap();
    s.set_fault(SourceFault::Garbage);
    assert!(matches!(
        ask(a.as_ref(), &person).await,
        Err(AdapterError::Malformed(_))
    ));
    s.set_fault(SourceFault::Status500);
    assert_eq!(
        ask(a.as_ref(), &person).await,
        Err(AdapterError::Status(500))
    );
    s.set_fault(SourceFault::TooBusy);
    assert_eq!(ask(a.as_ref(), &person).await, Err(AdapterError::Limited));
    s.set_fault(SourceFault::None);
    assert_eq!(ask(a.as_ref(), &person).await.unwrap().len(), 1);

    // Another agency's answer is not this agency's.
    let other = build(&s.base_url(), "930000002", &json!({"api_key": API_KEY})).unwrap();
    assert!(matches!(
        ask(other.as_ref(), &person).await,
        Err(AdapterError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_by_the_agency() {
    let s = sim(HashMap::new()).await;
    let a = build(&s.base_url(), ORG, &json!({"api_key": "wrong"})).unwrap();
    assert_eq!(
        ask(a.as_ref(), &id(40)).await,
        Err(AdapterError::Status(401))
    );
    assert_eq!(s.refused(), 1);
}

#[test]
fn settings_are_checked_at_start() {
    assert!(matches!(
        build("http://x", ORG, &serde_json::Value::Null),
        Err(SetupError::Settings(_))
    ));
    assert!(matches!(
        build("http://x", ORG, &json!({"api_key": "k", "extra": 1})),
        Err(SetupError::Settings(_))
    ));
}
