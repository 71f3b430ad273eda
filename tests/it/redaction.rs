//! Search answers name no lender: no creditorName, no lender name, organisation
//! number, lender id or accountID in the body or any header; canonical loan order
//! whichever lender answered, live or from the snapshot, in whatever config order.

use crate::common;

use common::{Fixture, Options, fi_token};
use gjeldsbro_loadtest::sim::{Behaviour, Fault};
use serde_json::json;

fn forbidden_strings(fx: &Fixture) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, spec) in fx.specs.iter().enumerate() {
        out.push(Fixture::lender_name(i).to_owned());
        out.push(spec.org_no.clone());
        out.push(spec.id.clone());
        let port = fx.base_urls[i].rsplit(':').next().unwrap().to_owned();
        out.push(format!("127.0.0.1:{port}"));
    }
    out.extend(fx.all_account_ids());
    out
}

fn assert_clean(fx: &Fixture, forbidden: &[String], r: &common::Resp, what: &str) {
    let body = r.text();
    assert!(
        !body.contains("creditorName"),
        "{what}: creditorName in {body}"
    );
    assert!(!body.contains("accountID"), "{what}: accountID in {body}");
    for f in forbidden {
        assert!(!body.contains(f.as_str()), "{what}: {f:?} in the body");
        for (name, value) in &r.headers {
            let v = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !v.contains(f.as_str()) && !name.as_str().contains(f.as_str()),
                "{what}: {f:?} in header {name}: {v}"
            );
        }
    }
    let _ = fx;
}

#[tokio::test]
async fn search_answers_and_headers_name_no_lender() {
    let fx = Fixture::new(Options {
        lenders: 5,
        persons: 300,
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let forbidden = forbidden_strings(&fx);
    assert!(forbidden.len() > 100);
    let token = fi_token();
    let persons = fx.persons_with_lenders(1);
    let nobodies = fx.persons_without_debt();

    // Plain searches, live.
    for p in persons.iter().take(40) {
        let r = b.search(p).await;
        assert_eq!(r.status, 200);
        assert_clean(&fx, &forbidden, &r, "live");
        common::assert_canonical_order(&r.loans());
        assert_eq!(r.loans(), fx.expected_loans(p));
    }
    // With co-borrowers (some without debt).
    for chunk in persons[40..].chunks(3).take(10) {
        let cos: Vec<_> = chunk[1..]
            .iter()
            .map(|c| json!({"ssn": c}))
            .chain([json!({"ssn": nobodies[0]})])
            .collect();
        let r = b
            .search_as(
                &token,
                &json!({"ssn": chunk[0], "referenceID": "red", "coBorrowers": cos}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_clean(&fx, &forbidden, &r, "co-borrowers");
        for c in r.json()["coBorrowers"].as_array().unwrap() {
            common::assert_canonical_order(&common::loans_of(c));
        }
    }
    // Some lenders failing (snapshot answers) and one missing entirely.
    fx.sim(1).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
    fx.sim(3).set_behaviour(Behaviour {
        fault: Fault::WrongCustomer,
        ..Behaviour::default()
    });
    for p in persons.iter().take(30) {
        let r = b.search(p).await;
        assert_eq!(r.status, 200);
        assert_clean(&fx, &forbidden, &r, "snapshot");
        assert_eq!(r.loans(), fx.expected_loans(p), "snapshot loans differ");
    }
    // Error answers from a failing search do not name lenders either.
    let r = b
        .search_as(&token, &json!({"ssn": persons[0], "referenceID": ""}))
        .await;
    r.assert_error(400);
    assert_clean(&fx, &forbidden, &r, "error");
}

/// The same person, the same bytes: whether the lenders are configured in one
/// order or the reverse, and whether they answer live or from the snapshot.
#[tokio::test]
async fn answers_do_not_depend_on_which_lender_answered() {
    let forward = Fixture::new(Options {
        lenders: 4,
        seed: 9,
        ..Options::default()
    })
    .await;
    let reverse = Fixture::new(Options {
        lenders: 4,
        seed: 9,
        order: Some(vec![3, 2, 1, 0]),
        ..Options::default()
    })
    .await;
    let a = forward.broker().await;
    let b = reverse.broker().await;
    // In the reversed setup, half the lenders answer from the snapshot.
    reverse.sim(0).set_behaviour(Behaviour {
        fault: Fault::Garbage,
        ..Behaviour::default()
    });
    reverse.sim(2).set_behaviour(Behaviour {
        fault: Fault::Status429,
        ..Behaviour::default()
    });
    let multi = forward.persons_with_lenders(2);
    assert!(multi.len() >= 20);
    let mut mixed_types = 0;
    for p in multi.iter().take(40) {
        let ra = a.search(p).await;
        let rb = b.search(p).await;
        assert_eq!(ra.status, 200);
        assert_eq!(rb.status, 200);
        assert_eq!(ra.body, rb.body, "answers differ by lender order or source");
        let loans = ra.loans();
        common::assert_canonical_order(&loans);
        let types: std::collections::HashSet<_> =
            loans.iter().map(|l| l["type"].to_string()).collect();
        if types.len() > 1 {
            mixed_types += 1;
        }
    }
    assert!(mixed_types > 5, "too few answers exercise the type order");
}

/// The same person, two purposes: a consent lookup names every creditor, a
/// search a moment later names none (issue 5).
#[tokio::test]
async fn a_consent_lookup_names_creditors_and_a_search_for_the_same_person_does_not() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let forbidden = forbidden_strings(&fx);
    let p = fx.persons_with_lenders(2)[0].clone();
    let partner = common::token(
        common::PARTNER,
        &["consent.create", "debt.unsecured.presentation"],
    );
    let r = b
        .put_json(
            "/v1/consent/agreement",
            &partner,
            &json!({"nin": p, "scope_of_consent": "debt.unsecured.presentation",
                    "consent_duration_days": 1, "client_consent_id": "names"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["consent"]["id"].as_str().unwrap().to_owned();

    let with_consent = b.get_as(&format!("/v1/debt/{id}"), &partner).await;
    assert_eq!(with_consent.status, 200, "{}", with_consent.text());
    let names: Vec<String> = with_consent.json()["loans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["creditorName"].as_str().expect("a name").to_owned())
        .collect();
    let expected: Vec<&str> = fx
        .indexed_lenders(&p)
        .iter()
        .map(|&i| Fixture::lender_name(i))
        .collect();
    assert!(names.iter().all(|n| expected.contains(&n.as_str())));
    assert!(names.len() >= 2);
    assert!(!with_consent.text().contains("accountID"));

    let search = b.search(&p).await;
    assert_eq!(search.status, 200);
    assert_clean(&fx, &forbidden, &search, "search after a consent lookup");
    assert_eq!(
        search.loans(),
        with_consent.loans(),
        "the same loans, unnamed"
    );
}
