//! Contract tests of the API-DEBT-FI adapter against the lender simulator
//! (`gjeldsbro_loadtest::sim`), which speaks the protocol as DOMAIN.md gives it:
//! a held customer's loans come back canonical and unchanged; an unknown
//! customer is an empty answer; every way a lender can break the contract
//! (garbage, another customer's answer, an oversized body, 500, 429, 503, a
//! 404 for an unknown customer, a negative amount, a missing coBorrower) maps
//! to the adapter error the broker acts on, never to wrong data.

use std::time::Duration;

use gjeldsbro_adapter::{AdapterError, CustomerQuery, IdPolicy, LenderAdapter, Loan, NationalId};
use gjeldsbro_api_debt_fi::{ApiDebtFi, ApiDebtFiConfig};
use gjeldsbro_loadtest::{Behaviour, Fault, LenderSpec, Population, SimHandle, generate, spawn};

const SEED: u64 = 7;

struct Lender {
    population: Population,
    sim: SimHandle,
    adapter: ApiDebtFi,
}

impl Lender {
    fn spec(&self) -> &LenderSpec {
        &self.population.lenders()[0]
    }

    /// A person this lender holds debt for, and that debt as generated.
    fn holder(&self) -> (String, Vec<Loan>) {
        let id = self.spec().id.clone();
        let person = self
            .population
            .persons_with_debt()
            .into_iter()
            .find(|p| !self.population.loans_of(&id, p).is_empty())
            .expect("the population holds someone at this lender")
            .to_owned();
        let loans = self.population.loans_of(&id, &person).to_vec();
        (person, loans)
    }

    fn stranger(&self) -> String {
        self.population
            .persons_without_debt()
            .first()
            .expect("the population has persons without debt")
            .to_string()
    }

    async fn ask(&self, person: &str) -> Result<Vec<Loan>, AdapterError> {
        self.adapter
            .fetch_customer(CustomerQuery {
                nin: NationalId::parse(person, IdPolicy::SYNTHETIC_OK).expect("a synthetic id"),
                trace_id: "contract-trace",
                traceparent: None,
            })
            .await
    }

    fn set(&self, fault: Fault) {
        self.sim.set_behaviour(Behaviour {
            fault,
            ..Behaviour::default()
        });
    }
}

async fn lender() -> Lender {
    let lenders = LenderSpec::numbered(1);
    let population = generate(SEED, 400, &lenders);
    let spec = &lenders[0];
    let sim = spawn(
        "127.0.0.1:0".parse().expect("an address"),
        spec.org_no.clone(),
        population.dataset(&spec.id),
        Behaviour::default(),
    )
    .await
    .expect("the simulator starts");
    let adapter = ApiDebtFi::new(ApiDebtFiConfig {
        base_url: sim.base_url(),
        org_no: spec.org_no.clone(),
        max_answer_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(2),
        pool_max_idle: 4,
    })
    .expect("the client builds");
    Lender {
        population,
        sim,
        adapter,
    }
}

#[tokio::test]
async fn a_held_customer_gets_exactly_the_lenders_loans() {
    let l = lender().await;
    assert_eq!(l.adapter.protocol(), "api-debt-fi");
    let (person, expected) = l.holder();
    let loans = l.ask(&person).await.expect("a healthy lender answers");
    assert_eq!(
        loans, expected,
        "canonical loans are the lender's, unchanged"
    );
    assert!(loans.iter().all(|loan| loan.validate().is_ok()));
    assert_eq!(
        l.sim.calls_for(&person),
        1,
        "one call, by customerID header"
    );
}

#[tokio::test]
async fn an_unknown_customer_is_an_empty_answer() {
    let l = lender().await;
    let loans = l.ask(&l.stranger()).await.expect("200 with no loans");
    assert!(loans.is_empty());
}

#[tokio::test]
async fn broken_answers_are_errors_never_data() {
    let l = lender().await;
    let (person, _) = l.holder();
    let cases = [
        (Fault::Garbage, "malformed"),
        (Fault::WrongCustomer, "malformed"),
        (Fault::Oversized, "too large"),
        (Fault::NegativeAmount, "malformed"),
        (Fault::MissingCoBorrower, "malformed"),
    ];
    for (fault, want) in cases {
        l.set(fault.clone());
        let got = l.ask(&person).await;
        let kind = match &got {
            Err(AdapterError::Malformed(_)) => "malformed",
            Err(AdapterError::TooLarge) => "too large",
            other => panic!("{fault:?}: expected {want}, got {other:?}"),
        };
        assert_eq!(kind, want, "{fault:?}");
        if let Err(AdapterError::Malformed(text)) = got {
            assert!(
                !text.contains(&person),
                "{fault:?}: the error text names the person"
            );
        }
    }
}

#[tokio::test]
async fn statuses_map_to_what_the_broker_acts_on() {
    let l = lender().await;
    let (person, _) = l.holder();
    l.set(Fault::Status500);
    assert_eq!(l.ask(&person).await, Err(AdapterError::Status(500)));
    l.set(Fault::Status429);
    assert_eq!(
        l.ask(&person).await,
        Err(AdapterError::Limited),
        "429 is the lender's limit, not a failure"
    );
    l.set(Fault::Unavailable { every: 1 });
    assert_eq!(l.ask(&person).await, Err(AdapterError::Status(503)));
    l.set(Fault::NotFoundForUnknown);
    assert_eq!(
        l.ask(&l.stranger()).await,
        Err(AdapterError::Status(404)),
        "a 404 is not read as 'no debt'"
    );
    l.set(Fault::None);
    assert!(l.ask(&person).await.is_ok_and(|loans| !loans.is_empty()));
}

#[tokio::test]
async fn a_lender_that_is_gone_is_a_connect_error() {
    let l = lender().await;
    let (person, _) = l.holder();
    let base = l.sim.base_url();
    l.sim.shutdown().await;
    let adapter = ApiDebtFi::new(ApiDebtFiConfig {
        base_url: base.clone(),
        org_no: "920000001".into(),
        max_answer_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(2),
        pool_max_idle: 0,
    })
    .expect("the client builds");
    let got = adapter
        .fetch_customer(CustomerQuery {
            nin: NationalId::parse(&person, IdPolicy::SYNTHETIC_OK).expect("a synthetic id"),
            trace_id: "t",
            traceparent: None,
        })
        .await;
    let text = match got {
        Err(AdapterError::Connect(text) | AdapterError::Transport(text)) => text,
        other => panic!("expected a connect error, got {other:?}"),
    };
    let host = base.trim_start_matches("http://");
    assert!(
        !text.contains(host),
        "the error names the lender's host: {text}"
    );
    assert!(
        !text.contains(&person),
        "the error names the person: {text}"
    );
}
