//! A deterministic synthetic population: Tenor-style national ids (month + 80) and
//! their unsecured debt, spread across a set of lenders.
//!
//! The same seed always gives the same persons, loans and datasets, so a load test,
//! a demo and an integration test can regenerate the exact data a simulator serves
//! and the broker ingested. Only valid data is produced: every id parses with
//! [`IdPolicy::SYNTHETIC_OK`], every loan passes [`Loan::validate`].

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use gjeldsbro_adapter::{ChargePeriod, CustomerLoans, IdPolicy, Loan, LoanType, NationalId, nin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One lender of the population: its id (as in the broker's config) and its
/// organisation number (its `financialInstitutionID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenderSpec {
    pub id: String,
    pub org_no: String,
}

impl LenderSpec {
    pub fn new(id: impl Into<String>, org_no: impl Into<String>) -> Self {
        LenderSpec {
            id: id.into(),
            org_no: org_no.into(),
        }
    }

    /// The conventional demo and load-test lenders: `lender-1..=k` with
    /// organisation numbers `920000001`, `920000002`, ...
    pub fn numbered(k: usize) -> Vec<LenderSpec> {
        (1..=k)
            .map(|i| LenderSpec::new(format!("lender-{i}"), format!("{}", 920_000_000 + i)))
            .collect()
    }
}

/// The generated persons and their loans, per lender.
#[derive(Debug, Clone)]
pub struct Population {
    persons: Vec<String>,
    lenders: Vec<LenderSpec>,
    /// Person -> indices into `lenders` holding debt for them (sorted, distinct).
    holdings: HashMap<String, Vec<usize>>,
    /// Per lender (same order as `lenders`): its customers, sorted by customerID.
    datasets: Vec<Vec<CustomerLoans>>,
}

/// Loan timestamps lie within the 90 days before this fixed instant
/// (2026-01-15T05:00:00Z), at midnight UTC, so that the data do not depend on
/// when they were made.
const TIMESTAMP_BASE: i64 = 1_768_453_200;

/// Generates `persons` distinct synthetic persons and their loans across `lenders`.
/// About 20 % hold no debt; the others hold 1-4 loans, each at a random lender.
/// With no lenders, nobody holds debt.
pub fn generate(seed: u64, persons: usize, lenders: &[LenderSpec]) -> Population {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(persons);
    let mut ids = Vec::with_capacity(persons);
    while ids.len() < persons {
        let id = random_id(&mut rng);
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }

    let mut per_lender: Vec<HashMap<String, Vec<Loan>>> = vec![HashMap::new(); lenders.len()];
    let mut next_account = vec![0u64; lenders.len()];
    let mut holdings: HashMap<String, Vec<usize>> = HashMap::new();
    for id in &ids {
        let count = if lenders.is_empty() {
            0
        } else {
            match rng.random_range(0..100u32) {
                0..20 => 0,
                20..55 => 1,
                55..80 => 2,
                80..92 => 3,
                _ => 4,
            }
        };
        for _ in 0..count {
            let lender = rng.random_range(0..lenders.len());
            next_account[lender] += 1;
            let account = format!("{}-{:08}", lenders[lender].org_no, next_account[lender]);
            let loan = random_loan(&mut rng, account);
            per_lender[lender].entry(id.clone()).or_default().push(loan);
            let held = holdings.entry(id.clone()).or_default();
            if !held.contains(&lender) {
                held.push(lender);
            }
        }
    }
    for held in holdings.values_mut() {
        held.sort_unstable();
    }

    let datasets = per_lender
        .into_iter()
        .zip(lenders)
        .map(|(customers, spec)| {
            let mut list: Vec<CustomerLoans> = customers
                .into_iter()
                .map(|(customer_id, loans)| CustomerLoans {
                    customer_id,
                    financial_institution_id: spec.org_no.clone(),
                    loans,
                })
                .collect();
            list.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
            list
        })
        .collect();

    Population {
        persons: ids,
        lenders: lenders.to_vec(),
        holdings,
        datasets,
    }
}

/// Generates `persons` distinct synthetic persons who each hold debt at every one
/// of `lenders` (one or two loans at each), so every lookup fans out to exactly
/// `lenders.len()` lenders: what a load test with a fixed fan-out needs.
pub fn generate_at_all(seed: u64, persons: usize, lenders: &[LenderSpec]) -> Population {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(persons);
    let mut ids = Vec::with_capacity(persons);
    while ids.len() < persons {
        let id = random_id(&mut rng);
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    let mut next_account = vec![0u64; lenders.len()];
    let mut datasets: Vec<Vec<CustomerLoans>> = vec![Vec::with_capacity(persons); lenders.len()];
    let mut holdings: HashMap<String, Vec<usize>> = HashMap::with_capacity(persons);
    for id in &ids {
        if lenders.is_empty() {
            break;
        }
        for (l, spec) in lenders.iter().enumerate() {
            let count = rng.random_range(1..=2usize);
            let loans = (0..count)
                .map(|_| {
                    next_account[l] += 1;
                    let account = format!("{}-{:08}", spec.org_no, next_account[l]);
                    random_loan(&mut rng, account)
                })
                .collect();
            datasets[l].push(CustomerLoans {
                customer_id: id.clone(),
                financial_institution_id: spec.org_no.clone(),
                loans,
            });
        }
        holdings.insert(id.clone(), (0..lenders.len()).collect());
    }
    for list in &mut datasets {
        list.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    }
    Population {
        persons: ids,
        lenders: lenders.to_vec(),
        holdings,
        datasets,
    }
}

/// A synthetic id whose individual number matches its century: 000-499 for
/// 1940-1999 births, 500-999 for 2000-2005. About 5 % are d-numbers.
fn random_id(rng: &mut StdRng) -> String {
    loop {
        let (yy, individual) = if rng.random_bool(0.85) {
            (rng.random_range(40..=99u32), rng.random_range(0..=499u32))
        } else {
            (rng.random_range(0..=5u32), rng.random_range(500..=999u32))
        };
        let month = rng.random_range(1..=12u32);
        let year = if individual < 500 {
            1900 + yy
        } else {
            2000 + yy
        };
        let day = rng.random_range(1..=days_in_month(month, year));
        let d_number = rng.random_bool(0.05);
        if let Some(id) = nin::make_id(day, month, yy, individual, d_number, true) {
            debug_assert!(NationalId::parse(&id, IdPolicy::SYNTHETIC_OK).is_ok());
            return id;
        }
    }
}

fn days_in_month(month: u32, year: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// NOK amount in whole kroner within `lo..=hi`, rounded to `step`, as øre.
fn nok(rng: &mut StdRng, lo: i64, hi: i64, step: i64) -> i64 {
    rng.random_range(lo / step..=hi / step) * step * 100
}

fn random_period(rng: &mut StdRng) -> ChargePeriod {
    match rng.random_range(0..100u32) {
        0..80 => ChargePeriod::Monthly,
        80..90 => ChargePeriod::Quarterly,
        90..95 => ChargePeriod::HalfYearly,
        _ => ChargePeriod::Yearly,
    }
}

fn random_loan(rng: &mut StdRng, account_id: String) -> Loan {
    let co_borrower = match rng.random_range(0..100u32) {
        0..85 => 0,
        85..93 => 1,
        _ => 2,
    };
    // Midnight UTC: the form a redacted answer shows a timestamp in is then
    // the same as the unredacted one, so tests can expect one list of loans.
    let ts = TIMESTAMP_BASE - rng.random_range(0..90 * 86_400);
    let ts = OffsetDateTime::from_unix_timestamp(ts - ts.rem_euclid(86_400))
        .expect("timestamp in range")
        .format(&Rfc3339)
        .expect("RFC 3339 formats any UTC time");
    let mut loan = Loan::new(
        LoanType::RepaymentLoan,
        Some(account_id),
        Some(ts),
        Some(co_borrower),
    );
    match rng.random_range(0..100u32) {
        0..50 => {
            let original = nok(rng, 10_000, 500_000, 1_000);
            // Somewhere between 5 % and 100 % still outstanding, in whole kroner.
            let balance = original * rng.random_range(5..=100i64) / 100 / 100 * 100;
            loan.original_balance = Some(original);
            loan.balance = Some(balance);
            loan.terms = Some(rng.random_range(6..=180));
            loan.nominal_interest_rate = Some(rng.random_range(700..=2500));
            loan.installment_charges = Some(rng.random_range(0..=95i64) * 100);
            loan.installment_charge_period = Some(random_period(rng));
        }
        50..85 => {
            loan.loan_type = LoanType::CreditFacility;
            let limit = nok(rng, 10_000, 150_000, 5_000);
            let drawn = if rng.random_bool(0.3) {
                0
            } else {
                rng.random_range(0..=limit / 100) * 100
            };
            loan.credit_limit = Some(limit);
            loan.interest_bearing_balance = Some(drawn);
            loan.non_interest_bearing_balance = Some(if drawn > 0 && rng.random_bool(0.3) {
                rng.random_range(0..=2_000i64) * 100
            } else {
                0
            });
            loan.nominal_interest_rate = Some(rng.random_range(1200..=2500));
            loan.installment_charges = Some(rng.random_range(0..=95i64) * 100);
            loan.installment_charge_period = Some(ChargePeriod::Monthly);
        }
        _ => {
            loan.loan_type = LoanType::ChargeCard;
            loan.interest_bearing_balance = Some(if rng.random_bool(0.5) {
                0
            } else {
                nok(rng, 0, 40_000, 1)
            });
            loan.non_interest_bearing_balance = Some(nok(rng, 0, 30_000, 1));
        }
    }
    loan
}

impl Population {
    /// Every person, including those with no debt, in generation order.
    pub fn persons(&self) -> &[String] {
        &self.persons
    }

    /// The persons that hold debt at one lender at least, in generation order.
    pub fn persons_with_debt(&self) -> Vec<&str> {
        self.persons
            .iter()
            .filter(|p| self.holdings.contains_key(p.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The persons that hold no debt, in generation order.
    pub fn persons_without_debt(&self) -> Vec<&str> {
        self.persons
            .iter()
            .filter(|p| !self.holdings.contains_key(p.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The lenders of the population, in the order given to [`generate`].
    pub fn lenders(&self) -> &[LenderSpec] {
        &self.lenders
    }

    /// The ids of the lenders holding debt for `person` (empty for none or unknown).
    pub fn lenders_of(&self, person: &str) -> Vec<&str> {
        self.holdings
            .get(person)
            .map(|held| held.iter().map(|&i| self.lenders[i].id.as_str()).collect())
            .unwrap_or_default()
    }

    /// The loans `lender_id` holds for `person` (empty for none or unknown).
    pub fn loans_of(&self, lender_id: &str, person: &str) -> &[Loan] {
        self.customers(lender_id)
            .and_then(|list| {
                list.binary_search_by(|c| c.customer_id.as_str().cmp(person))
                    .ok()
                    .map(|i| list[i].loans.as_slice())
            })
            .unwrap_or(&[])
    }

    /// The total number of loans across every lender.
    pub fn loan_count(&self) -> usize {
        self.datasets
            .iter()
            .flat_map(|d| d.iter().map(|c| c.loans.len()))
            .sum()
    }

    fn lender_index(&self, lender_id: &str) -> Option<usize> {
        self.lenders.iter().position(|l| l.id == lender_id)
    }

    fn customers(&self, lender_id: &str) -> Option<&[CustomerLoans]> {
        self.lender_index(lender_id)
            .map(|i| self.datasets[i].as_slice())
    }

    /// The customers of `lender_id`, sorted by customerID (empty for an unknown lender).
    pub fn dataset(&self, lender_id: &str) -> Vec<CustomerLoans> {
        self.customers(lender_id)
            .map(<[CustomerLoans]>::to_vec)
            .unwrap_or_default()
    }

    /// Writes the lender's daily dataset as a getalldata JSON file:
    /// `{"providerID":"9908:<org>","customers":[...]}`.
    pub fn write_dataset(&self, lender_id: &str, path: impl AsRef<Path>) -> io::Result<()> {
        let index = self.lender_index(lender_id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no lender {lender_id:?} in this population"),
            )
        })?;
        let page = DatasetRef {
            provider_id: gjeldsbro_adapter::provider_id(&self.lenders[index].org_no),
            customers: &self.datasets[index],
        };
        let mut out = BufWriter::new(std::fs::File::create(path)?);
        serde_json::to_writer(&mut out, &page).map_err(io::Error::other)?;
        out.flush()
    }
}

/// A borrowed dataset page, serialised exactly like [`gjeldsbro_adapter::DatasetPage`].
#[derive(Serialize)]
pub(crate) struct DatasetRef<'a> {
    #[serde(rename = "providerID")]
    pub provider_id: String,
    pub customers: &'a [CustomerLoans],
}
