//! Streaming parse and validation of a getalldata document.
//!
//! The document is read one customer at a time (a serde visitor over the
//! `customers` array), so memory stays flat in the file size: only the current
//! customer and a small batch of rows are held, plus 12 bytes per customer for the
//! duplicate check. The first broken rule stops the parse with its position.

use std::fmt;
use std::io::Read;

use crate::loan::Loan;
use crate::{CustomerLoans, DebtKind, IdPolicy, NationalId, provider_id, scrub};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One snapshot row to load: a lender's loan for one person.
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub nin: NationalId,
    pub loan: Loan,
}

/// A rule a delivery breaks, with the customer's position (0-based) in it.
/// Never holds a national id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("customer #{position}: {rule}: {detail}")]
pub struct Rejection {
    pub rule: &'static str,
    pub position: u64,
    pub detail: String,
}

/// What a parse saw.
#[derive(Debug, Default)]
pub struct ParseSummary {
    pub customers: u64,
    pub loans: u64,
    pub open_loans: u64,
    /// Persons with at least one open loan, sorted and unique.
    pub persons: Vec<u64>,
}

/// Why a parse stopped.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The consumer of the rows went away (store failure); not the lender's fault.
    #[error("the load was aborted")]
    Aborted,
}

/// Receives the validated open-loan rows in batches. Returns false to abort.
pub trait RowSink {
    fn rows(&mut self, rows: Vec<SnapshotRow>) -> bool;
}

/// Rows per batch handed to the sink.
pub const BATCH_ROWS: usize = 5_000;

struct State<'s> {
    org_no: &'s str,
    received_at: &'s str,
    policy: IdPolicy,
    sink: &'s mut dyn RowSink,
    batch: Vec<SnapshotRow>,
    seen: Vec<(u64, u32)>,
    summary: ParseSummary,
    provider_seen: bool,
    failure: Option<ParseError>,
    require_provider: bool,
    include_closed: bool,
    kind: DebtKind,
}

impl State<'_> {
    fn reject(&mut self, rule: &'static str, detail: impl Into<String>) -> ParseError {
        ParseError::Rejected(Rejection {
            rule,
            position: self.summary.customers,
            detail: detail.into(),
        })
    }

    fn customer(&mut self, c: CustomerLoans) -> Result<(), ParseError> {
        let nin = NationalId::parse(&c.customer_id, self.policy)
            .map_err(|e| self.reject("invalid_national_id", e.to_string()))?;
        if c.financial_institution_id != self.org_no {
            return Err(self.reject(
                "foreign_institution",
                "financialInstitutionID is not this lender's organisation number",
            ));
        }
        let position = u32::try_from(self.summary.customers).unwrap_or(u32::MAX);
        self.seen.push((nin.as_u64(), position));
        let mut open = false;
        for (i, loan) in c.loans.iter().enumerate() {
            // A lender delivers only its own kind of debt: an API-DEBT-FI
            // lender cannot slip a student loan past the consent rules.
            loan.validate_for(self.kind)
                .map_err(|rule| self.reject(rule.code(), format!("loan {i}: {rule}")))?;
            self.summary.loans += 1;
            if !loan.is_closed() {
                open = true;
                self.summary.open_loans += 1;
            }
            if self.include_closed || !loan.is_closed() {
                let mut loan = loan.canonical();
                // A snapshot row's timestamp tells its age; a lender that sent
                // none gets the time the delivery was received.
                if loan.timestamp.is_none() {
                    loan.timestamp = Some(self.received_at.to_owned());
                }
                self.batch.push(SnapshotRow { nin, loan });
            }
        }
        if open {
            self.summary.persons.push(nin.as_u64());
        }
        self.summary.customers += 1;
        if self.batch.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ParseError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ROWS));
        if self.sink.rows(rows) {
            Ok(())
        } else {
            Err(ParseError::Aborted)
        }
    }
}

/// Validates one delivery made of one or more getalldata documents (the pages of
/// a pull). Duplicate detection spans all documents, so a customer split across
/// pages is rejected as a duplicate.
pub struct DatasetParser {
    org_no: String,
    received_at: String,
    policy: IdPolicy,
    require_provider: bool,
    include_closed: bool,
    kind: DebtKind,
    seen: Vec<(u64, u32)>,
    summary: ParseSummary,
}

impl DatasetParser {
    /// `require_provider` demands a `providerID` of `9908:<org_no>` in every
    /// document (pulls and pushes); files may omit it.
    pub fn new(org_no: &str, policy: IdPolicy, require_provider: bool) -> Self {
        DatasetParser {
            org_no: org_no.to_owned(),
            // To the second: a row's age needs no more, and a delivery
            // instant to the nanosecond would be the same telltale on every
            // row of the lender.
            received_at: crate::time::now_utc_seconds(),
            policy,
            require_provider,
            include_closed: false,
            kind: DebtKind::Unsecured,
            seen: Vec::new(),
            summary: ParseSummary::default(),
        }
    }

    /// Hands closed loans to the sink too (pushes: a closed loan removes the
    /// stored one).
    pub fn including_closed(mut self) -> Self {
        self.include_closed = true;
        self
    }

    /// The kind of debt the lender serves (default: the register's); loans
    /// of any other kind reject the delivery.
    pub fn of_kind(mut self, kind: DebtKind) -> Self {
        self.kind = kind;
        self
    }

    /// Customers read so far, over all documents.
    pub fn customers(&self) -> u64 {
        self.summary.customers
    }

    /// Parses one document from `reader`, handing open loans to `sink` in batches.
    /// Returns the number of customers in this document.
    pub fn parse_document(
        &mut self,
        reader: impl Read,
        sink: &mut dyn RowSink,
    ) -> Result<u64, ParseError> {
        let before = self.summary.customers;
        let mut state = State {
            org_no: &self.org_no,
            received_at: &self.received_at,
            policy: self.policy,
            sink,
            batch: Vec::with_capacity(BATCH_ROWS),
            seen: std::mem::take(&mut self.seen),
            summary: std::mem::take(&mut self.summary),
            provider_seen: false,
            failure: None,
            require_provider: self.require_provider,
            include_closed: self.include_closed,
            kind: self.kind,
        };
        let result = run_document(&mut state, reader);
        self.seen = std::mem::take(&mut state.seen);
        self.summary = std::mem::take(&mut state.summary);
        result?;
        Ok(self.summary.customers - before)
    }

    /// Ends the delivery: checks duplicates across all documents.
    pub fn finish(mut self) -> Result<ParseSummary, ParseError> {
        check_duplicates(&mut self.seen)?;
        let mut summary = self.summary;
        summary.persons.sort_unstable();
        summary.persons.dedup();
        Ok(summary)
    }
}

fn run_document(state: &mut State<'_>, reader: impl Read) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(
        256 * 1024,
        reader,
    ));
    let parsed = Document { state: &mut *state }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(failure) = state.failure.take() {
        return Err(failure);
    }
    if let Err(e) = parsed {
        return Err(state.reject("malformed_json", scrub(&e.to_string())));
    }
    if state.require_provider && !state.provider_seen {
        return Err(state.reject("wrong_provider", "providerID is missing"));
    }
    state.flush()
}

/// Parses a single-document delivery (a file): see [`DatasetParser`].
pub fn parse_dataset(
    reader: impl Read,
    org_no: &str,
    policy: IdPolicy,
    require_provider: bool,
    sink: &mut dyn RowSink,
) -> Result<ParseSummary, ParseError> {
    let mut parser = DatasetParser::new(org_no, policy, require_provider);
    parser.parse_document(reader, sink)?;
    parser.finish()
}

fn check_duplicates(seen: &mut [(u64, u32)]) -> Result<(), ParseError> {
    seen.sort_unstable();
    for pair in seen.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (first, second) = (pair[0].1.min(pair[1].1), pair[0].1.max(pair[1].1));
            return Err(ParseError::Rejected(Rejection {
                rule: "duplicate_customer",
                position: u64::from(second),
                detail: format!("the same customer as customer #{first}"),
            }));
        }
    }
    Ok(())
}

/// The marker error that stops serde when a rule broke (the real reason is kept
/// in the state).
const STOP: &str = "gjeldsbro: delivery rejected";

struct Document<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a getalldata object with providerID and customers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut customers_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "providerID" => {
                    let provider: String = map.next_value()?;
                    if provider != provider_id(self.state.org_no) {
                        self.state.failure = Some(self.state.reject(
                            "wrong_provider",
                            "providerID is not 9908:<this lender's organisation number>",
                        ));
                        return Err(de::Error::custom(STOP));
                    }
                    self.state.provider_seen = true;
                }
                "customers" if !customers_seen => {
                    customers_seen = true;
                    map.next_value_seed(Customers { state: self.state })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !customers_seen {
            return Err(de::Error::missing_field("customers"));
        }
        Ok(())
    }
}

struct Customers<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for Customers<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Customers<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of customers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(customer) = seq.next_element::<CustomerLoans>()? {
            if let Err(e) = self.state.customer(customer) {
                self.state.failure = Some(e);
                return Err(de::Error::custom(STOP));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nin::make_id;

    struct Collect(Vec<SnapshotRow>);
    impl RowSink for Collect {
        fn rows(&mut self, rows: Vec<SnapshotRow>) -> bool {
            self.0.extend(rows);
            true
        }
    }

    fn id(i: u32) -> String {
        (i..i + 50)
            .find_map(|k| make_id(1 + k % 28, 2, 85, k % 500, false, true))
            .unwrap()
    }

    fn doc(customers: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"providerID": "9908:920000001", "customers": customers}),
        )
        .unwrap()
    }

    fn customer(nin: &str, loans: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"customerID": nin, "financialInstitutionID": "920000001", "loans": loans})
    }

    fn card(ib: i64) -> serde_json::Value {
        serde_json::json!({"type": "chargeCard", "accountID": "C1", "coBorrower": 0,
            "interestBearingBalance": ib, "nonInterestBearingBalance": 0})
    }

    fn run(bytes: &[u8]) -> Result<(ParseSummary, Vec<SnapshotRow>), ParseError> {
        let mut sink = Collect(Vec::new());
        let s = parse_dataset(bytes, "920000001", IdPolicy::SYNTHETIC_OK, true, &mut sink)?;
        Ok((s, sink.0))
    }

    fn rule_of(r: Result<(ParseSummary, Vec<SnapshotRow>), ParseError>) -> (&'static str, u64) {
        match r {
            Err(ParseError::Rejected(rej)) => (rej.rule, rej.position),
            other => panic!(
                "expected a rejection, got {:?}",
                other.map(|(s, _)| s.customers)
            ),
        }
    }

    #[test]
    fn a_lender_delivers_only_its_own_kind_of_debt() {
        let student = serde_json::json!({"type": "studentLoan", "accountID": "saldo",
            "principal": 100, "interest": 0, "fees": 0, "costs": 0});
        let bytes = doc(&[customer(&id(1), serde_json::json!([student]))]);
        assert_eq!(rule_of(run(&bytes)), ("wrong_kind", 0));

        let mut sink = Collect(Vec::new());
        let mut parser = DatasetParser::new("920000001", IdPolicy::SYNTHETIC_OK, true)
            .of_kind(DebtKind::StudentLoan);
        parser.parse_document(&bytes[..], &mut sink).unwrap();
        assert_eq!(parser.finish().unwrap().open_loans, 1);
        assert_eq!(sink.0.len(), 1);

        let bytes = doc(&[customer(&id(1), serde_json::json!([card(10)]))]);
        let mut parser = DatasetParser::new("920000001", IdPolicy::SYNTHETIC_OK, true)
            .of_kind(DebtKind::StudentLoan);
        assert!(matches!(
            parser.parse_document(&bytes[..], &mut Collect(Vec::new())),
            Err(ParseError::Rejected(Rejection {
                rule: "wrong_kind",
                ..
            }))
        ));
    }

    #[test]
    fn a_good_document_yields_open_loans_only() {
        let a = id(1);
        let b = id(100);
        let bytes = doc(&[
            customer(&a, serde_json::json!([card(10), card(0)])),
            customer(&b, serde_json::json!([card(0)])),
        ]);
        let (summary, rows) = run(&bytes).unwrap();
        assert!(
            rows[0]
                .loan
                .timestamp
                .as_deref()
                .is_some_and(|t| t.ends_with('Z')),
            "stamped on receipt"
        );
        assert_eq!(summary.customers, 2);
        assert_eq!(summary.loans, 3);
        assert_eq!(summary.open_loans, 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(summary.persons.len(), 1);
    }

    #[test]
    fn each_rule_rejects_with_its_position() {
        let a = id(1);
        let b = id(100);
        let dup = doc(&[
            customer(&a, serde_json::json!([])),
            customer(&b, serde_json::json!([])),
            customer(&a, serde_json::json!([])),
        ]);
        assert_eq!(rule_of(run(&dup)), ("duplicate_customer", 2));
        let neg = doc(&[
            customer(&a, serde_json::json!([])),
            customer(&b, serde_json::json!([card(-5)])),
        ]);
        assert_eq!(rule_of(run(&neg)), ("negative_amount", 1));
        let mut bad_id = a.clone().into_bytes();
        bad_id[10] = b'0' + (bad_id[10] - b'0' + 1) % 10;
        let bad = doc(&[customer(
            std::str::from_utf8(&bad_id).unwrap(),
            serde_json::json!([]),
        )]);
        assert_eq!(rule_of(run(&bad)), ("invalid_national_id", 0));
        let no_co = doc(&[customer(
            &a,
            serde_json::json!([{"type": "chargeCard", "accountID": "C",
            "interestBearingBalance": 1, "nonInterestBearingBalance": 0}]),
        )]);
        assert_eq!(rule_of(run(&no_co)), ("missing_co_borrower", 0));
        let foreign = doc(&[
            serde_json::json!({"customerID": a, "financialInstitutionID": "920000002", "loans": []}),
        ]);
        assert_eq!(rule_of(run(&foreign)), ("foreign_institution", 0));
        let provider =
            serde_json::to_vec(&serde_json::json!({"providerID": "9908:1", "customers": []}))
                .unwrap();
        assert_eq!(rule_of(run(&provider)), ("wrong_provider", 0));
        assert_eq!(rule_of(run(b"{\"customers\": [")).0, "malformed_json");
        assert_eq!(rule_of(run(b"[]")).0, "malformed_json");
    }

    #[test]
    fn a_customer_split_across_pages_is_a_duplicate() {
        let a = id(1);
        let b = id(100);
        let mut sink = Collect(Vec::new());
        let mut parser = DatasetParser::new("920000001", IdPolicy::SYNTHETIC_OK, true);
        let page0 = doc(&[
            customer(&a, serde_json::json!([card(1)])),
            customer(&b, serde_json::json!([])),
        ]);
        let page1 = doc(&[customer(&a, serde_json::json!([card(2)]))]);
        assert_eq!(parser.parse_document(&page0[..], &mut sink).unwrap(), 2);
        assert_eq!(parser.parse_document(&page1[..], &mut sink).unwrap(), 1);
        assert_eq!(parser.customers(), 3);
        match parser.finish() {
            Err(ParseError::Rejected(r)) => {
                assert_eq!((r.rule, r.position), ("duplicate_customer", 2))
            }
            other => panic!("expected a duplicate, got {:?}", other.map(|s| s.customers)),
        }
    }

    #[test]
    fn rejection_texts_never_hold_the_id() {
        let a = id(1);
        let text = format!(
            "{{\"providerID\":\"9908:920000001\",\"customers\":[{{\"customerID\":{a},\"loans\":[]}}]}}"
        );
        let Err(ParseError::Rejected(r)) = run(text.as_bytes()) else {
            panic!("expected rejection")
        };
        assert!(!r.detail.contains(&a), "{}", r.detail);
        assert!(!r.to_string().contains(&a));
    }
}
