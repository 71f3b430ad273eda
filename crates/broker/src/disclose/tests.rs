//! The pipeline's rules, with fakes for every port: no SQLite, no sockets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gjeldsbro_adapter::nin::{IdPolicy, make_id};
use gjeldsbro_adapter::{KindSet, Loan, LoanType};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::*;
use crate::index::LenderIdx;
use crate::lookup::{LenderAnswer, Source};
use crate::metrics::Metrics;

/// What the fake store does with a consent's spend.
#[derive(Clone, Copy)]
enum Spend {
    Commits,
    LosesTheRace,
    Fails,
}

struct Fake {
    /// Each person's lender answers, by id number.
    answers: HashMap<u64, Vec<LenderAnswer>>,
    /// The fan-out answers for this many fewer persons than asked.
    drop_persons: usize,
    /// `record` waits for a permit: a closed gate holds the commit open.
    gate: Semaphore,
    record_fails: bool,
    spend: Spend,
    /// Batches committed through the log writer.
    log: Mutex<Vec<Vec<DisclosureRecord>>>,
    /// Consent uses committed with their records.
    uses: Mutex<Vec<(UseRequest, Vec<DisclosureRecord>)>>,
    /// What happened, in order: `record`, `use`, `redact`.
    events: Mutex<Vec<&'static str>>,
    metrics: Metrics,
}

impl Fake {
    fn new() -> Self {
        Fake {
            answers: HashMap::new(),
            drop_persons: 0,
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
            record_fails: false,
            spend: Spend::Commits,
            log: Mutex::default(),
            uses: Mutex::default(),
            events: Mutex::default(),
            metrics: Metrics::new(),
        }
    }

    fn event(&self, e: &'static str) {
        self.events.lock().expect("events").push(e);
    }

    fn events(&self) -> Vec<&'static str> {
        self.events.lock().expect("events").clone()
    }

    fn log(&self) -> Vec<Vec<DisclosureRecord>> {
        self.log.lock().expect("log").clone()
    }

    fn uses(&self) -> Vec<(UseRequest, Vec<DisclosureRecord>)> {
        self.uses.lock().expect("uses").clone()
    }

    fn failures(&self, label: &str) -> u64 {
        self.metrics
            .disclosure_failures
            .with_label_values(&[label])
            .get()
    }
}

impl Ports for Fake {
    async fn persons(
        &self,
        nins: &[NationalId],
        _kinds: KindSet,
        _deadline: Instant,
        _trace: &TraceContext,
    ) -> Vec<PersonDebt> {
        let keep = nins.len().saturating_sub(self.drop_persons);
        nins[..keep]
            .iter()
            .map(|&nin| PersonDebt {
                nin,
                answers: self.answers.get(&nin.as_u64()).cloned().unwrap_or_default(),
            })
            .collect()
    }

    async fn record(&self, records: Vec<DisclosureRecord>) -> Result<(), AuditError> {
        let _permit = self.gate.acquire().await;
        if self.record_fails {
            return Err(AuditError::WriterGone);
        }
        self.log.lock().expect("log").push(records);
        self.event("record");
        Ok(())
    }

    async fn use_consent_and_record(
        &self,
        request: &UseRequest,
        records: &[DisclosureRecord],
    ) -> Result<bool, StoreError> {
        match self.spend {
            Spend::Commits => {
                let used = (request.clone(), records.to_vec());
                self.uses.lock().expect("uses").push(used);
                self.event("use");
                Ok(true)
            }
            Spend::LosesTheRace => Ok(false),
            Spend::Fails => Err(StoreError::Query("disk full".into())),
        }
    }

    fn lender_id(&self, idx: LenderIdx) -> Option<&str> {
        ["bank-a", "collector-b"].get(usize::from(idx)).copied()
    }

    fn redact(&self, merged: &MergedDebt, _purpose: Purpose, _kinds: KindSet) -> DebtInformation {
        self.event("redact");
        DebtInformation {
            ssn: merged.nin,
            loans: Vec::new(),
            number_of_creditors_answered: merged.answered,
            number_of_creditors_missing: merged.missing,
            consent: None,
            co_borrowers: None,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn now(&self) -> OffsetDateTime {
        // Nanoseconds, so the two formats of `at` differ visibly.
        datetime!(2026-11-24 18:26:38.123456789 UTC)
    }
}

fn nin(i: u32) -> NationalId {
    let id = (i * 100..i * 100 + 100)
        .find_map(|n| make_id(1, 3, 80, n, false, true))
        .expect("an id");
    NationalId::parse(&id, IdPolicy::SYNTHETIC_OK).expect("a valid id")
}

fn loan() -> Loan {
    serde_json::from_value(serde_json::json!({
        "type": LoanType::RepaymentLoan.as_str(), "accountID": "A-1", "balance": 100,
        "interestBearingBalance": 100, "nonInterestBearingBalance": 0
    }))
    .expect("loan")
}

fn answer(lender: LenderIdx, source: Source, loans: Vec<Loan>) -> LenderAnswer {
    LenderAnswer {
        lender,
        source,
        loans,
        outcome: if source == Source::Live {
            "ok"
        } else {
            "timeout"
        },
        elapsed: Duration::ZERO,
    }
}

fn trace() -> TraceContext {
    TraceContext {
        trace_id: "t".into(),
        traceparent: None,
    }
}

fn search_ask<'a>(persons: &'a [NationalId], trace: &'a TraceContext) -> Ask<'a> {
    Ask {
        persons,
        kinds: KindSet::UNSECURED,
        purpose: Purpose::Search,
        wait: Duration::from_secs(3),
        trace,
        record: Record::Yes {
            to: Recipient {
                org: "910000001",
                on_behalf_of: Some("910000009"),
                reference_id: "ref-1",
                message: Some("hello"),
                letter: LetterOwedBy::CreditBureau,
            },
            commit: Commit::Log,
        },
    }
}

fn consent_ask<'a>(persons: &'a [NationalId], trace: &'a TraceContext) -> Ask<'a> {
    Ask {
        persons,
        kinds: KindSet::UNSECURED,
        purpose: Purpose::Processing,
        wait: Duration::from_secs(3),
        trace,
        record: Record::Yes {
            to: Recipient {
                org: "910000002",
                on_behalf_of: None,
                reference_id: "client-consent-1",
                message: None,
                letter: LetterOwedBy::None,
            },
            commit: Commit::WithConsentUse { consent_id: "c-1" },
        },
    }
}

/// No answer exists while the commit is open: a pipeline that answered first
/// and recorded after (or in the background) fails here.
#[tokio::test(start_paused = true)]
async fn the_records_are_committed_before_an_answer_exists() {
    let fake = Fake::new();
    fake.gate.forget_permits(Semaphore::MAX_PERMITS);
    let persons = [nin(1)];
    let trace = trace();
    let ask = search_ask(&persons, &trace);
    let run = disclose(&fake, &ask);
    tokio::pin!(run);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), &mut run)
            .await
            .is_err(),
        "answered while the commit was still open"
    );
    assert!(fake.events().is_empty(), "{:?}", fake.events());
    fake.gate.add_permits(1);
    let disclosed = run.await.expect("disclosed");
    assert_eq!(disclosed.persons.len(), 1);
    assert_eq!(fake.events(), ["record", "redact"]);
    assert_eq!(fake.log().len(), 1);
}

#[tokio::test]
async fn a_failed_record_yields_no_answer() {
    let fake = Fake {
        record_fails: true,
        ..Fake::new()
    };
    let persons = [nin(1)];
    let trace = trace();
    let result = disclose(&fake, &search_ask(&persons, &trace)).await;
    assert!(matches!(result, Err(DiscloseError::Log(_))), "{result:?}");
    assert!(!fake.events().contains(&"redact"), "an answer was built");
    assert_eq!(fake.failures("search"), 1);
}

#[tokio::test]
async fn the_own_view_writes_no_record() {
    let mut fake = Fake::new();
    let me = nin(1);
    fake.answers
        .insert(me.as_u64(), vec![answer(0, Source::Live, vec![loan()])]);
    let persons = [me];
    let trace = trace();
    let ask = Ask {
        persons: &persons,
        kinds: KindSet::ALL,
        purpose: Purpose::OwnView,
        wait: Duration::from_secs(3),
        trace: &trace,
        record: Record::No,
    };
    let disclosed = disclose(&fake, &ask).await.expect("own view");
    assert_eq!(disclosed.persons.len(), 1);
    assert_eq!(disclosed.persons[0].debt.fan_out(), 1);
    assert!(fake.log().is_empty(), "the own view wrote a record");
    assert!(fake.uses().is_empty(), "the own view spent a consent");
    assert_eq!(fake.events(), ["redact"]);
    let fan_out = fake.metrics.fan_out.with_label_values(&["own_view"]);
    assert_eq!(fan_out.get_sample_count(), 1);
}

/// Applicant and co-borrowers are one disclosure: one batch, one `query_id`,
/// one record per person in the order asked; another search gets another id.
#[tokio::test]
async fn co_borrowers_share_one_query_id() {
    let fake = Fake::new();
    let persons = [nin(1), nin(2), nin(3)];
    let trace = trace();
    let disclosed = disclose(&fake, &search_ask(&persons, &trace))
        .await
        .expect("search");
    let answered: Vec<_> = disclosed.persons.iter().map(|p| p.answer.ssn).collect();
    assert_eq!(answered, persons);
    disclose(&fake, &search_ask(&persons[..1], &trace))
        .await
        .expect("second search");
    let log = fake.log();
    assert_eq!(log.len(), 2, "one commit per search");
    let first = &log[0];
    let nins: Vec<u64> = first.iter().map(|r| r.nin).collect();
    assert_eq!(nins, persons.map(NationalId::as_u64));
    assert!(first.iter().all(|r| r.query_id == first[0].query_id));
    assert_ne!(log[1][0].query_id, first[0].query_id);
}

/// The record's fields as a search has always written them, `at` included.
#[tokio::test]
async fn a_search_record_says_who_asked_and_who_owes_the_letter() {
    let mut fake = Fake::new();
    let person = nin(1);
    fake.answers.insert(
        person.as_u64(),
        vec![
            answer(0, Source::Live, vec![loan()]),
            answer(1, Source::Missing, Vec::new()),
        ],
    );
    let persons = [person];
    let trace = trace();
    disclose(&fake, &search_ask(&persons, &trace))
        .await
        .expect("search");
    let log = fake.log();
    let r = &log[0][0];
    assert_eq!(r.at, "2026-11-24T18:26:38.123456789Z");
    assert_eq!(r.recipient_org, "910000001");
    assert_eq!(r.on_behalf_of.as_deref(), Some("910000009"));
    assert_eq!(r.purpose, "search");
    assert_eq!(r.reference_id, "ref-1");
    assert_eq!(r.letter_owed_by, "credit_bureau");
    assert_eq!(r.message.as_deref(), Some("hello"));
    // Lender ids, never the account id; a lender that did not answer counts.
    assert!(!r.disclosed.contains("accountID"), "{}", r.disclosed);
    let disclosed: serde_json::Value = serde_json::from_str(&r.disclosed).expect("json");
    assert_eq!(disclosed["loans"][0]["lender"], "bank-a");
    assert_eq!(disclosed["loans"].as_array().map(Vec::len), Some(1));
    assert_eq!(disclosed["missing"], 1);
}

/// A consent's records go in the spend's transaction, with the spend's `at`
/// and `query_id`, at the fixed width; never through the log writer.
#[tokio::test]
async fn a_consent_lookup_commits_its_records_with_the_use() {
    let fake = Fake::new();
    let persons = [nin(1)];
    let trace = trace();
    disclose(&fake, &consent_ask(&persons, &trace))
        .await
        .expect("consent lookup");
    assert!(
        fake.log().is_empty(),
        "written outside the consent's transaction"
    );
    assert_eq!(fake.events(), ["use", "redact"]);
    let uses = fake.uses();
    let (request, records) = &uses[0];
    assert_eq!(request.consent_id, "c-1");
    assert_eq!(request.client_org, "910000002");
    assert_eq!(request.at, "2026-11-24T18:26:38.123456Z");
    let [r] = records.as_slice() else {
        panic!("one record per person: {records:?}");
    };
    assert_eq!(r.query_id, request.query_id);
    assert_eq!(r.at, request.at);
    assert_eq!(r.purpose, "debt.unsecured.processing");
    assert_eq!(r.reference_id, "client-consent-1");
    assert_eq!(r.letter_owed_by, "none");
    assert_eq!(
        (r.on_behalf_of.as_deref(), r.message.as_deref()),
        (None, None)
    );
}

/// Another use won the consent: nothing answered, and it is not a failure to
/// record (the dashboards count those as the log being down).
#[tokio::test]
async fn a_lost_race_answers_nothing() {
    let fake = Fake {
        spend: Spend::LosesTheRace,
        ..Fake::new()
    };
    let persons = [nin(1)];
    let trace = trace();
    let result = disclose(&fake, &consent_ask(&persons, &trace)).await;
    assert!(
        matches!(result, Err(DiscloseError::ConsentGone)),
        "{result:?}"
    );
    assert!(fake.events().is_empty(), "{:?}", fake.events());
    assert_eq!(fake.failures("consent"), 0);
}

#[tokio::test]
async fn a_failed_consent_commit_answers_nothing_and_is_counted() {
    let fake = Fake {
        spend: Spend::Fails,
        ..Fake::new()
    };
    let persons = [nin(1)];
    let trace = trace();
    let result = disclose(&fake, &consent_ask(&persons, &trace)).await;
    assert!(matches!(result, Err(DiscloseError::Store(_))), "{result:?}");
    assert!(fake.events().is_empty(), "{:?}", fake.events());
    assert_eq!(fake.failures("consent"), 1);
}

/// A person the fan-out lost would go unrecorded, and a consent would be spent
/// on no record at all: nothing is committed.
#[tokio::test]
async fn a_person_missing_from_the_fan_out_commits_nothing() {
    let fake = Fake {
        drop_persons: 1,
        ..Fake::new()
    };
    let persons = [nin(1)];
    let trace = trace();
    let result = disclose(&fake, &consent_ask(&persons, &trace)).await;
    assert!(
        matches!(result, Err(DiscloseError::Incomplete { asked: 1, got: 0 })),
        "{result:?}"
    );
    assert!(fake.uses().is_empty() && fake.log().is_empty());
}
