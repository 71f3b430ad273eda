//! Every search writes its disclosure records before answering: one row per
//! person asked for, with the recipient, on-behalf-of, reference and who owes the
//! copy letter; refused requests write nothing.

use crate::common;

use common::{BUREAU, FI, Fixture, Options, fi_token, token};
use serde_json::{Value, json};
use sqlx::Row;

#[derive(Debug)]
struct Rec {
    query_id: String,
    recipient_org: String,
    on_behalf_of: Option<String>,
    purpose: String,
    reference_id: String,
    nin: String,
    disclosed: Value,
    letter_owed_by: String,
    message: Option<String>,
    prev_hash: String,
    hash: String,
}

async fn records(fx: &Fixture) -> Vec<Rec> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", fx.db_path.display()))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT query_id, recipient_org, on_behalf_of, purpose, reference_id, nin, disclosed, \
         letter_owed_by, message, prev_hash, hash FROM disclosures ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| Rec {
            query_id: r.get(0),
            recipient_org: r.get(1),
            on_behalf_of: r.get(2),
            purpose: r.get(3),
            reference_id: r.get(4),
            nin: format!("{:011}", r.get::<i64, _>(5)),
            disclosed: serde_json::from_str(r.get::<&str, _>(6)).unwrap(),
            letter_owed_by: r.get(7),
            message: r.get(8),
            prev_hash: r.get(9),
            hash: r.get(10),
        })
        .collect()
}

#[tokio::test]
async fn each_search_is_recorded_with_who_owes_the_letter() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let with = fx.persons_with_lenders(2);
    let without = fx.persons_without_debt();
    let accounts = fx.all_account_ids();

    // 1. An FI: the broker owes the letter.
    let r = b
        .search_as(
            &fi_token(),
            &json!({"ssn": with[0], "referenceID": "case-1", "messageToCustomer": "Lånesøknad"}),
        )
        .await;
    assert_eq!(r.status, 200);
    // 2. An FI with co-borrowers and usingOwnNotification: the recipient owes it.
    let r = b
        .search_as(
            &fi_token(),
            &json!({"ssn": with[1], "referenceID": "case-2", "usingOwnNotification": true,
                    "coBorrowers": [{"ssn": with[2]}, {"ssn": without[0]}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    // 3. A bureau on behalf of the FI: the bureau owes it.
    let r = b
        .search_as(
            &token(BUREAU, &["debt.search"]),
            &json!({"ssn": with[3], "referenceID": "case-3", "onBehalfOfOrganization": FI}),
        )
        .await;
    assert_eq!(r.status, 200);
    // 4. No debt: 204, still recorded (that the person has no debt was disclosed).
    let r = b
        .search_as(
            &fi_token(),
            &json!({"ssn": without[1], "referenceID": "case-4"}),
        )
        .await;
    assert_eq!(r.status, 204);
    // Refused requests are not recorded.
    b.search_as(
        &token(BUREAU, &["debt.search"]),
        &json!({"ssn": with[4], "referenceID": "x"}),
    )
    .await
    .assert_error(400);
    b.search_as(&fi_token(), &json!({"ssn": with[4]}))
        .await
        .assert_error(400);
    b.search_as(
        &token(common::PARTNER, &["debt.search"]),
        &json!({"ssn": with[4], "referenceID": "x"}),
    )
    .await
    .assert_error(403);

    let recs = records(&fx).await;
    assert_eq!(recs.len(), 1 + 3 + 1 + 1, "{recs:#?}");
    for r in &recs {
        assert_eq!(r.purpose, "search");
    }

    let r1 = &recs[0];
    assert_eq!(
        (
            r1.nin.as_str(),
            r1.recipient_org.as_str(),
            r1.on_behalf_of.as_deref()
        ),
        (with[0].as_str(), FI, None)
    );
    assert_eq!(r1.letter_owed_by, "broker");
    assert_eq!(r1.reference_id, "case-1");
    assert_eq!(r1.message.as_deref(), Some("Lånesøknad"));
    assert_eq!(
        r1.disclosed["loans"].as_array().unwrap().len(),
        fx.expected_loans(&with[0]).len()
    );
    assert_eq!(r1.disclosed["missing"], json!(0));

    let group: Vec<&Rec> = recs[1..4].iter().collect();
    let nins: Vec<&str> = group.iter().map(|r| r.nin.as_str()).collect();
    assert_eq!(
        nins,
        vec![with[1].as_str(), with[2].as_str(), without[0].as_str()]
    );
    for r in &group {
        assert_eq!(r.query_id, group[0].query_id, "one query id per answer");
        assert_eq!(r.letter_owed_by, "recipient");
        assert_eq!(r.recipient_org, FI);
        assert_eq!(r.reference_id, "case-2");
        assert_eq!(r.message, None);
    }
    assert_ne!(group[0].query_id, r1.query_id);
    assert_eq!(group[2].disclosed["loans"], json!([]));

    let r3 = &recs[4];
    assert_eq!(r3.nin, with[3]);
    assert_eq!(r3.recipient_org, BUREAU);
    assert_eq!(r3.on_behalf_of.as_deref(), Some(FI));
    assert_eq!(r3.letter_owed_by, "credit_bureau");

    let r4 = &recs[5];
    assert_eq!(r4.nin, without[1]);
    assert_eq!(r4.letter_owed_by, "broker");
    assert_eq!(r4.disclosed["loans"], json!([]));

    // The records hold no accountID; they are hash-chained.
    for r in &recs {
        let text = r.disclosed.to_string();
        assert!(!text.contains("accountID"));
        for a in &accounts {
            assert!(!text.contains(a.as_str()));
        }
    }
    assert_eq!(recs[0].prev_hash, "0".repeat(64));
    for pair in recs.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "broken hash chain");
    }
}

/// No record, no answer: when the disclosure log cannot be written, the search
/// fails with 503 and the error JSON, and discloses nothing.
#[tokio::test]
async fn a_search_that_cannot_be_recorded_discloses_nothing() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    assert_eq!(b.search(&p).await.status, 200);

    // Take the log table away behind the broker's back.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", fx.db_path.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE disclosures RENAME TO disclosures_away")
        .execute(&pool)
        .await
        .unwrap();
    let r = b.search(&p).await;
    let v = r.assert_error(503);
    assert_eq!(v["error"], json!("service_unavailable"));
    let body = r.text();
    assert!(!body.contains("loans") && !body.contains(&p), "{body}");
    let none = fx.persons_without_debt()[0].clone();
    b.search(&none).await.assert_error(503);

    // Back in place, searches are answered and recorded again.
    sqlx::query("ALTER TABLE disclosures_away RENAME TO disclosures")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(b.search(&p).await.status, 200);
    let recs = records(&fx).await;
    assert_eq!(recs.len(), 2, "only the two answered searches are recorded");
}
