//! The lookup path end to end: only indexed lenders are called, each exactly once
//! per search; no debt → 204 and no calls; co-borrowers answered alongside.

use crate::common;

use common::{Fixture, Options, fi_token};
use serde_json::json;

#[tokio::test]
async fn only_indexed_lenders_are_called_once_each() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let persons = fx.persons_with_lenders(1);
    assert!(persons.len() > 100, "population too small");
    // Some at several lenders, so "each exactly once" means something.
    assert!(fx.persons_with_lenders(3).len() >= 5);

    for p in persons.iter().take(60) {
        fx.reset_stats();
        let r = b.search(p).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let indexed = fx.indexed_lenders(p);
        for (i, sim) in fx.live_sims() {
            let want = u64::from(indexed.contains(&i));
            assert_eq!(
                sim.calls_for(p),
                want,
                "lender {i} calls for an indexed={} person",
                want == 1
            );
            assert_eq!(
                sim.stats().customer_calls,
                want,
                "lender {i} got calls for someone else"
            );
        }
        let v = r.json();
        assert_eq!(v["ssn"], json!(p));
        assert_eq!(v["numberOfCreditorsAnswered"], json!(indexed.len()));
        assert_eq!(v["numberOfcreditorsMissing"], json!(0));
        assert_eq!(r.loans(), fx.expected_loans(p), "loans of a live answer");
    }
}

#[tokio::test]
async fn a_person_without_debt_gets_204_and_nobody_is_called() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let nobodies = fx.persons_without_debt();
    assert!(nobodies.len() > 10);
    fx.reset_stats();
    for p in nobodies.iter().take(20) {
        let r = b.search(p).await;
        assert_eq!(r.status, 204, "{}", r.text());
        assert!(r.body.is_empty());
        for (_, sim) in fx.live_sims() {
            assert_eq!(sim.calls_for(p), 0);
        }
    }
    // A valid synthetic id unknown to everyone, too.
    let fresh = common::fresh_synthetic_id(&fx.pop, "150485");
    assert_eq!(b.search(&fresh).await.status, 204);
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "a lender learned of a 204 search"
    );
}

#[tokio::test]
async fn co_borrowers_are_answered_alongside() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let with = fx.persons_with_lenders(1);
    let without = fx.persons_without_debt();
    let token = fi_token();
    let search = |ssn: &str, co: &[&str]| {
        let cos: Vec<_> = co.iter().map(|c| json!({"ssn": c})).collect();
        json!({"ssn": ssn, "referenceID": "co-1", "coBorrowers": cos})
    };

    // Applicant and two co-borrowers with debt, in the order asked.
    fx.reset_stats();
    let (a, c1, c2) = (&with[0], &with[1], &with[2]);
    let r = b.search_as(&token, &search(a, &[c1, c2])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ssn"], json!(a));
    assert_eq!(common::loans_of(&v), fx.expected_loans(a));
    let cos = v["coBorrowers"].as_array().expect("coBorrowers");
    assert_eq!(cos.len(), 2);
    for (c, want) in cos.iter().zip([c1, c2]) {
        assert_eq!(c["ssn"], json!(want));
        assert_eq!(common::loans_of(c), fx.expected_loans(want));
        assert_eq!(
            c["numberOfCreditorsAnswered"],
            json!(fx.indexed_lenders(want).len())
        );
        assert!(c.get("coBorrowers").is_none());
    }
    for p in [a, c1, c2] {
        for (i, sim) in fx.live_sims() {
            let want = u64::from(fx.indexed_lenders(p).contains(&i));
            assert_eq!(sim.calls_for(p), want);
        }
    }

    // Applicant without debt, co-borrower with: 200, the applicant's list empty.
    let r = b.search_as(&token, &search(&without[0], &[c1])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["loans"], json!([]));
    assert_eq!(v["numberOfCreditorsAnswered"], json!(0));
    assert_eq!(
        common::loans_of(&v["coBorrowers"][0]),
        fx.expected_loans(c1)
    );

    // Applicant with debt, co-borrower without: 200, the co-borrower's list empty.
    let r = b.search_as(&token, &search(a, &[&without[0]])).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["coBorrowers"][0]["ssn"], json!(without[0]));
    assert_eq!(v["coBorrowers"][0]["loans"], json!([]));

    // Nobody has debt: 204, and nobody was called.
    fx.reset_stats();
    let r = b
        .search_as(&token, &search(&without[0], &[&without[1], &without[2]]))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(fx.total_customer_calls(), 0);

    // Without coBorrowers asked, no coBorrowers key.
    let r = b.search(a).await;
    assert!(r.json().get("coBorrowers").is_none());

    // A co-borrower repeating the applicant is refused.
    let r = b.search_as(&token, &search(a, &[a])).await;
    r.assert_error(400);
}
