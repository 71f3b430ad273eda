//! Contract tests of the student-loan adapter against the simulated saldo API
//! and token endpoint (`gjeldsbro_loadtest::student_loan_sim`): the headers as
//! the API expects them (checked at the server side), the saldo split, empty,
//! malformed and failed answers, `429 Too busy`, and the token's caching and
//! refresh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gjeldsbro_adapter::nin::make_id;
use gjeldsbro_adapter::{
    AdapterError, CustomerQuery, DebtKind, IdPolicy, LenderAdapter, LenderSetup, LoanType,
    NationalId, SetupError,
};
use gjeldsbro_loadtest::SourceFault;
use gjeldsbro_loadtest::student_loan_sim::{Saldo, StudentLoanSim, StudentLoanSimConfig};
use serde_json::json;

const KID: &str = "gjeldsbro-dev-mp-1";
const CLIENT_ID: &str = "gjeldsbro-test-client";
const AUDIENCE: &str = "https://maskinporten.test.example/";
const SCOPE: &str = "lanekassen:saldo";
const API_KEY: &str = "test-api-key";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn id(individual: u32) -> String {
    (individual..individual + 20)
        .find_map(|i| make_id(1, 1, 90, i, false, true))
        .expect("a synthetic id")
}

fn nin(text: &str) -> NationalId {
    NationalId::parse(text, IdPolicy::SYNTHETIC_OK).expect("valid id")
}

async fn sim(lifetime: Duration, saldos: HashMap<String, Saldo>) -> StudentLoanSim {
    StudentLoanSim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        StudentLoanSimConfig {
            client_public_key_pem: std::fs::read(repo("config/dev-maskinporten-client-pub.pem"))
                .unwrap(),
            kid: KID.into(),
            client_id: CLIENT_ID.into(),
            audience: AUDIENCE.into(),
            scope: SCOPE.into(),
            api_key: API_KEY.into(),
            token_lifetime: lifetime,
            saldos,
        },
    )
    .await
    .unwrap()
}

fn settings(sim: &StudentLoanSim, kid: &str) -> serde_json::Value {
    json!({
        "token_url": sim.token_url(),
        "token_audience": AUDIENCE,
        "client_id": CLIENT_ID,
        "scope": SCOPE,
        "key_file": "config/dev-maskinporten-client-key.pem",
        "kid": kid,
        "api_key": API_KEY,
        "token_refresh_margin_secs": 1,
    })
}

fn build(
    base_url: &str,
    settings: &serde_json::Value,
) -> Result<Arc<dyn LenderAdapter>, SetupError> {
    let resolve = |p: &Path| repo(&p.to_string_lossy());
    let setup = LenderSetup {
        id: "lanekassen",
        org_no: "960885406",
        base_url,
        timeout: Duration::from_secs(2),
        max_answer_bytes: 64 * 1024,
        settings,
        resolve: &resolve,
        allow_plain_http: true,
    };
    gjeldsbro_student_loans::from_setup(&setup, reqwest::Client::new())
}

async fn adapter_for(sim: &StudentLoanSim) -> Arc<dyn LenderAdapter> {
    build(&sim.base_url(), &settings(sim, KID)).expect("adapter")
}

async fn ask(
    a: &dyn LenderAdapter,
    person: &str,
) -> Result<Vec<gjeldsbro_adapter::Loan>, AdapterError> {
    a.fetch_customer(CustomerQuery {
        nin: nin(person),
        trace_id: "trace-1",
        traceparent: None,
    })
    .await
}

#[tokio::test]
async fn happy_path_with_the_headers_the_api_expects() {
    let person = id(100);
    let s = sim(
        Duration::from_secs(120),
        HashMap::from([(
            person.clone(),
            Saldo::from_ore(31_234_567, 123_450, 7_000, 0),
        )]),
    )
    .await;
    let a = adapter_for(&s).await;
    assert_eq!(a.protocol(), "student-loans");
    assert_eq!(a.kind(), DebtKind::StudentLoan);

    let loans = ask(a.as_ref(), &person).await.expect("answer");
    assert_eq!(loans.len(), 1);
    let l = &loans[0];
    assert_eq!(l.loan_type, LoanType::StudentLoan);
    assert_eq!(
        (l.principal, l.interest, l.fees, l.costs),
        (Some(31_234_567), Some(123_450), Some(7_000), Some(0))
    );
    assert_eq!(l.co_borrower, None);

    // Asserted at the server: every check passed, and these are what it saw.
    assert_eq!(s.saldo_refused(), 0);
    assert_eq!(s.tokens_refused(), 0);
    let seen = s.last_seen().expect("a call passed");
    assert_eq!(seen.api_key, API_KEY);
    assert!(
        seen.authorization.starts_with("sim-"),
        "the bare token, no Bearer"
    );
    assert_eq!(seen.psu_id, person);
    ask(a.as_ref(), &person).await.expect("answer");
    let ids = s.request_ids();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "a fresh X-Request-Id per call");
}

#[tokio::test]
async fn a_person_without_a_student_loan_gets_an_empty_answer() {
    let s = sim(Duration::from_secs(120), HashMap::new()).await;
    let a = adapter_for(&s).await;
    assert!(ask(a.as_ref(), &id(200)).await.expect("answer").is_empty());
}

#[tokio::test]
async fn malformed_answers_errors_and_too_busy() {
    let person = id(300);
    let s = sim(
        Duration::from_secs(120),
        HashMap::from([(person.clone(), Saldo::from_ore(1, 0, 0, 0))]),
    )
    .await;
    let a = adapter_for(&s).await;
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
    assert_eq!(
        ask(a.as_ref(), &person).await,
        Err(AdapterError::Limited),
        "429 Too busy is the lender's limit"
    );
    assert_eq!(AdapterError::Limited.outcome(), "limited");
    s.set_fault(SourceFault::None);
    assert_eq!(ask(a.as_ref(), &person).await.expect("answer").len(), 1);
    assert_eq!(s.token_requests(), 1, "failures did not cost new tokens");
}

#[tokio::test]
async fn an_unreachable_lender_is_a_connect_error_without_its_address() {
    let s = sim(Duration::from_secs(120), HashMap::new()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = build(&format!("http://127.0.0.1:{closed}"), &settings(&s, KID)).unwrap();
    match ask(a.as_ref(), &id(400)).await {
        Err(AdapterError::Connect(m)) => assert!(!m.contains(&closed.to_string()), "{m}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_token_is_cached_and_refreshed_shortly_before_expiry() {
    let person = id(500);
    // Tokens live 2 s; the adapter refreshes 1 s before expiry.
    let s = sim(
        Duration::from_secs(2),
        HashMap::from([(person.clone(), Saldo::from_ore(100, 0, 0, 0))]),
    )
    .await;
    let a = adapter_for(&s).await;
    for _ in 0..5 {
        ask(a.as_ref(), &person).await.expect("answer");
    }
    assert_eq!(s.token_requests(), 1, "one token for five calls");
    let first = s.last_seen().unwrap().authorization;

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    ask(a.as_ref(), &person).await.expect("answer");
    assert_eq!(s.token_requests(), 2, "refreshed before it expired");
    assert_ne!(s.last_seen().unwrap().authorization, first);
    assert_eq!(s.saldo_refused(), 0, "never sent an expired token");
}

#[tokio::test]
async fn concurrent_calls_share_one_token_fetch() {
    let person = id(600);
    let s = sim(
        Duration::from_secs(120),
        HashMap::from([(person.clone(), Saldo::from_ore(100, 0, 0, 0))]),
    )
    .await;
    let a = adapter_for(&s).await;
    let calls = (0..8).map(|_| ask(a.as_ref(), &person));
    for r in futures::future::join_all(calls).await {
        r.expect("answer");
    }
    assert_eq!(s.token_requests(), 1);
}

#[tokio::test]
async fn a_refused_token_is_replaced_on_the_next_call() {
    let person = id(700);
    let s = sim(
        Duration::from_secs(120),
        HashMap::from([(person.clone(), Saldo::from_ore(100, 0, 0, 0))]),
    )
    .await;
    let a = adapter_for(&s).await;
    ask(a.as_ref(), &person).await.expect("answer");
    s.revoke_tokens();
    assert_eq!(
        ask(a.as_ref(), &person).await,
        Err(AdapterError::Status(401))
    );
    ask(a.as_ref(), &person).await.expect("a new token");
    assert_eq!(s.token_requests(), 2);
}

#[tokio::test]
async fn the_token_endpoint_checks_the_assertion() {
    let s = sim(Duration::from_secs(120), HashMap::new()).await;
    // A kid the issuer does not know: the grant is refused, the call fails, and
    // the saldo API is never asked without a token.
    let a = build(&s.base_url(), &settings(&s, "some-other-kid")).unwrap();
    assert_eq!(
        ask(a.as_ref(), &id(450)).await,
        Err(AdapterError::Status(400))
    );
    assert_eq!(s.tokens_refused(), 1);
    assert_eq!(s.saldo_calls(), 0);
}

#[test]
fn bad_settings_are_refused_at_start() {
    let base = "http://127.0.0.1:1";
    let mut missing = json!({"token_url": "http://x/token"});
    assert!(matches!(
        build(base, &missing),
        Err(SetupError::Settings(_))
    ));
    missing = json!({
        "token_url": "http://x/token", "token_audience": AUDIENCE, "client_id": CLIENT_ID,
        "scope": SCOPE, "key_file": "config/no-such-key.pem", "kid": KID, "api_key": API_KEY,
    });
    assert!(matches!(
        build(base, &missing),
        Err(SetupError::File { .. })
    ));
    let not_rsa = json!({
        "token_url": "http://x/token", "token_audience": AUDIENCE, "client_id": CLIENT_ID,
        "scope": SCOPE, "key_file": "config/dev-signing-key.pem", "kid": KID, "api_key": API_KEY,
    });
    assert!(matches!(build(base, &not_rsa), Err(SetupError::Key(_))));
    let unknown = json!({
        "token_url": "http://x/token", "token_audience": AUDIENCE, "client_id": CLIENT_ID,
        "scope": SCOPE, "key_file": "config/dev-maskinporten-client-key.pem", "kid": KID,
        "api_key": API_KEY, "colour": "blue",
    });
    assert!(matches!(
        build(base, &unknown),
        Err(SetupError::Settings(_))
    ));
}
