//! The synthetic population: deterministic, valid, consistent.

use std::collections::HashSet;

use gjeldsbro_adapter::{DatasetPage, IdKind, IdPolicy, LoanType, NationalId, NinError};
use gjeldsbro_loadtest::{LenderSpec, generate};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn lenders() -> Vec<LenderSpec> {
    LenderSpec::numbered(4)
}

#[test]
fn same_seed_same_population_other_seed_other_population() {
    let a = generate(42, 800, &lenders());
    let b = generate(42, 800, &lenders());
    let c = generate(43, 800, &lenders());
    assert_eq!(a.persons(), b.persons());
    for l in lenders() {
        assert_eq!(a.dataset(&l.id), b.dataset(&l.id));
    }
    for p in a.persons() {
        assert_eq!(a.lenders_of(p), b.lenders_of(p));
    }
    assert_ne!(a.persons(), c.persons());
    assert_ne!(a.dataset("lender-1"), c.dataset("lender-1"));
}

#[test]
fn numbered_lenders_follow_the_convention() {
    let l = LenderSpec::numbered(3);
    assert_eq!(l[0], LenderSpec::new("lender-1", "920000001"));
    assert_eq!(l[2], LenderSpec::new("lender-3", "920000003"));
}

#[test]
fn every_id_is_a_distinct_valid_synthetic_id() {
    let pop = generate(7, 3000, &lenders());
    assert_eq!(pop.persons().len(), 3000);
    let distinct: HashSet<&String> = pop.persons().iter().collect();
    assert_eq!(distinct.len(), 3000);
    let mut d_numbers = 0;
    let mut born_2000s = 0;
    for id in pop.persons() {
        let nin = NationalId::parse(id, IdPolicy::SYNTHETIC_OK)
            .unwrap_or_else(|e| panic!("generated id rejected: {e}"));
        assert!(nin.is_synthetic());
        assert_eq!(
            NationalId::parse(id, IdPolicy::STRICT),
            Err(NinError::SyntheticNotAllowed)
        );
        if nin.kind() == IdKind::DNumber {
            d_numbers += 1;
        }
        if id[6..9].parse::<u32>().unwrap() >= 500 {
            born_2000s += 1;
        }
    }
    // About 5 % d-numbers and 15 % born 2000-2005.
    assert!((60..=250).contains(&d_numbers), "{d_numbers} d-numbers");
    assert!((250..=650).contains(&born_2000s), "{born_2000s} born 2000s");
}

#[test]
fn every_loan_is_valid_and_realistic() {
    let pop = generate(11, 2000, &lenders());
    let mut types = HashSet::new();
    let mut total = 0;
    for l in lenders() {
        let mut accounts = HashSet::new();
        for c in pop.dataset(&l.id) {
            assert_eq!(c.financial_institution_id, l.org_no);
            assert!(!c.loans.is_empty());
            for loan in &c.loans {
                total += 1;
                loan.validate().expect("valid loan");
                assert!(
                    accounts.insert(loan.account_id.clone().unwrap()),
                    "accountID reused"
                );
                let ts = loan.timestamp.as_deref().unwrap();
                let t = OffsetDateTime::parse(ts, &Rfc3339).expect("RFC 3339 timestamp");
                assert_eq!(t.offset(), time::UtcOffset::UTC);
                types.insert(loan.loan_type);
                match loan.loan_type {
                    LoanType::RepaymentLoan => {
                        let orig = loan.original_balance.unwrap();
                        assert!((1_000_000..=50_000_000).contains(&orig));
                        assert!((0..=orig).contains(&loan.balance.unwrap()));
                        assert!((6..=180).contains(&loan.terms.unwrap()));
                        assert!((700..=2500).contains(&loan.nominal_interest_rate.unwrap()));
                        assert!((0..=9500).contains(&loan.installment_charges.unwrap()));
                        assert!(loan.installment_charge_period.is_some());
                    }
                    LoanType::CreditFacility => {
                        let limit = loan.credit_limit.unwrap();
                        assert!((1_000_000..=15_000_000).contains(&limit));
                        assert!(loan.interest_bearing_balance.unwrap() <= limit);
                        assert!(loan.nominal_interest_rate.is_some());
                    }
                    LoanType::ChargeCard => {
                        assert!(loan.non_interest_bearing_balance.is_some());
                        assert!(loan.credit_limit.is_none());
                    }
                    LoanType::StudentLoan | LoanType::CollectionCase => {
                        panic!("the population holds register loans only")
                    }
                }
            }
        }
    }
    assert_eq!(total, pop.loan_count());
    assert_eq!(types.len(), 3, "all three loan types occur");
}

#[test]
fn datasets_and_index_agree() {
    let pop = generate(3, 1500, &lenders());
    let with_debt: HashSet<&str> = pop.persons_with_debt().into_iter().collect();
    // About 20 % hold no debt.
    let share = with_debt.len() as f64 / 1500.0;
    assert!((0.72..=0.88).contains(&share), "share with debt {share}");
    assert_eq!(with_debt.len() + pop.persons_without_debt().len(), 1500);

    let mut seen_in_datasets = HashSet::new();
    for l in lenders() {
        let ds = pop.dataset(&l.id);
        let ids: Vec<&str> = ds.iter().map(|c| c.customer_id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "sorted by customerID without duplicates");
        for id in ids {
            assert!(pop.lenders_of(id).contains(&l.id.as_str()));
            assert!(!pop.loans_of(&l.id, id).is_empty());
            seen_in_datasets.insert(id.to_owned());
        }
    }
    for p in pop.persons() {
        let n = pop.lenders_of(p).len();
        let loans: usize = lenders().iter().map(|l| pop.loans_of(&l.id, p).len()).sum();
        assert!(loans <= 4);
        assert_eq!(n > 0, with_debt.contains(p.as_str()));
        assert_eq!(n > 0, seen_in_datasets.contains(p));
        assert!(n <= loans);
    }
    assert!(pop.lenders_of("00000000000").is_empty());
    assert!(pop.dataset("no-such-lender").is_empty());
}

#[test]
fn no_lenders_means_no_debt() {
    let pop = generate(1, 50, &[]);
    assert_eq!(pop.persons().len(), 50);
    assert!(pop.persons_with_debt().is_empty());
}

#[test]
fn write_dataset_writes_getalldata_json() {
    let pop = generate(5, 300, &lenders());
    let path = std::env::temp_dir().join(format!("gjeldsbro-pop-{}.json", std::process::id()));
    pop.write_dataset("lender-2", &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let page: DatasetPage = serde_json::from_str(&text).unwrap();
    assert_eq!(page.provider_id, "9908:920000002");
    assert_eq!(page.customers, pop.dataset("lender-2"));
    assert!(!page.customers.is_empty());
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(raw["customers"][0]["loans"][0]["coBorrower"].is_i64());
    assert!(pop.write_dataset("nope", &path).is_err());
}

#[test]
fn generate_at_all_puts_every_person_at_every_lender() {
    let specs = LenderSpec::numbered(4);
    let pop = gjeldsbro_loadtest::population::generate_at_all(9, 200, &specs);
    assert_eq!(pop.persons().len(), 200);
    assert!(pop.persons_without_debt().is_empty());
    for p in pop.persons() {
        assert_eq!(
            pop.lenders_of(p),
            vec!["lender-1", "lender-2", "lender-3", "lender-4"]
        );
        for spec in &specs {
            let loans = pop.loans_of(&spec.id, p);
            assert!((1..=2).contains(&loans.len()), "{} loans", loans.len());
            for loan in loans {
                assert!(loan.validate().is_ok());
            }
        }
        assert!(NationalId::parse(p, IdPolicy::SYNTHETIC_OK).is_ok());
    }
    for spec in &specs {
        let ds = pop.dataset(&spec.id);
        assert_eq!(ds.len(), 200);
        assert!(ds.windows(2).all(|w| w[0].customer_id < w[1].customer_id));
    }
    // Same seed, same data.
    let again = gjeldsbro_loadtest::population::generate_at_all(9, 200, &specs);
    assert_eq!(again.persons(), pop.persons());
}
