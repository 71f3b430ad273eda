//! The person's own view (issue 5): with a person token (`pid`) a person sees
//! their own debt with creditor names, their consents with every use, the
//! disclosures about them, and can withdraw a consent; nobody else's, and the
//! own view writes no disclosure record.

use crate::common;

use common::{FI, Fixture, Options, PARTNER, fi_token, person_token, token};
use gjeldsbro::auth::devtoken::{self, DevClaims};
use serde_json::json;

const PRESENTATION: &str = "debt.unsecured.presentation";

fn partner_token() -> String {
    token(
        PARTNER,
        &[
            "consent.create",
            PRESENTATION,
            "client.access.consent.events",
        ],
    )
}

async fn disclosure_count(fx: &Fixture) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", fx.db_path.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM disclosures")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn a_person_sees_their_own_debt_with_names_and_no_record_is_written() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let people = fx.persons_with_lenders(2);
    let (a, other) = (people[0].clone(), people[1].clone());

    let r = b.get_as("/v1/me/debt", &person_token(&a)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ssn"], json!(a), "the token's person, nobody else");
    assert_eq!(r.loans(), fx.expected_loans(&a));
    let names: Vec<&str> = fx
        .indexed_lenders(&a)
        .iter()
        .map(|&i| Fixture::lender_name(i))
        .collect();
    for e in v["loans"].as_array().unwrap() {
        assert!(names.contains(&e["creditorName"].as_str().expect("names shown")));
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = b.get_as("/v1/me/debt", &person_token(&other)).await;
    assert_eq!(r.json()["ssn"], json!(other));
    assert_eq!(
        disclosure_count(&fx).await,
        0,
        "the own view is not a disclosure"
    );

    // Only a person token: not an organisation's, not one naming both, not none.
    b.get_as("/v1/me/debt", &fi_token()).await.assert_error(403);
    let both = devtoken::mint(
        &common::dev_key(),
        devtoken::DEV_KID,
        common::ISSUER,
        common::AUDIENCE,
        DevClaims {
            org_no: Some(PARTNER.into()),
            scopes: vec![PRESENTATION.into()],
            pid: Some(a.clone()),
            ttl_secs: 600,
        },
    )
    .unwrap();
    b.get_as("/v1/me/debt", &both).await.assert_error(403);
    b.get("/v1/me/debt").await.assert_error(401);
    b.get_as("/v1/me/consents", "not.a.token")
        .await
        .assert_error(401);
}

#[tokio::test]
async fn a_person_sees_their_consents_uses_and_disclosures_and_withdraws() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let people = fx.persons_with_lenders(1);
    let (a, other) = (people[0].clone(), people[1].clone());
    let tok = partner_token();

    let r = b
        .put_json(
            "/v1/consent/agreement",
            &tok,
            &json!({"nin": a, "scope_of_consent": PRESENTATION, "consent_duration_days": 30, "client_consent_id": "me-1"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.json()["consent"]["id"].as_str().unwrap().to_owned();
    assert_eq!(b.get_as(&format!("/v1/debt/{id}"), &tok).await.status, 200);
    // A search by the FI about the same person.
    assert_eq!(b.search(&a).await.status, 200);

    let mine = b.get_as("/v1/me/consents", &person_token(&a)).await;
    assert_eq!(mine.status, 200, "{}", mine.text());
    let list = mine.json()["consents"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(c["id"], json!(id));
    assert_eq!(
        c["client"],
        json!({"orgNo": PARTNER, "name": "Itest Nettbank AS"})
    );
    assert_eq!(c["status"], json!("active"));
    assert_eq!(c["scope"], json!(PRESENTATION));
    let uses = c["uses"].as_array().unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0]["by"]["orgNo"], json!(PARTNER));
    assert_eq!(uses[0]["outcome"], json!("disclosed"));
    assert!(uses[0]["at"].as_str().unwrap().ends_with('Z'));
    let theirs = b.get_as("/v1/me/consents", &person_token(&other)).await;
    assert_eq!(theirs.json()["consents"], json!([]), "only one's own");

    let seen = b.get_as("/v1/me/disclosures", &person_token(&a)).await;
    assert_eq!(seen.status, 200);
    let d = seen.json()["disclosures"].as_array().unwrap().clone();
    assert_eq!(d.len(), 2, "{d:?}");
    // Newest first: the search, then the consent lookup.
    assert_eq!(d[0]["purpose"], json!("search"));
    assert_eq!(
        d[0]["recipient"],
        json!({"orgNo": FI, "name": "Itest Bank ASA"})
    );
    assert_eq!(d[0]["referenceID"], json!("itest"));
    assert_eq!(d[1]["purpose"], json!(PRESENTATION));
    assert_eq!(d[1]["recipient"]["orgNo"], json!(PARTNER));
    assert_eq!(d[1]["referenceID"], json!("me-1"));
    for rec in &d {
        for l in rec["disclosed"]["loans"].as_array().unwrap() {
            assert!(l["creditorName"].is_string(), "{l}");
        }
    }
    let none = b
        .get_as("/v1/me/disclosures", &person_token(&other))
        .await
        .json();
    assert_eq!(none["disclosures"], json!([]));
    assert_eq!(
        disclosure_count(&fx).await,
        2,
        "reading them records nothing"
    );

    // Someone else cannot withdraw it (404, as for no such consent).
    let r = b
        .delete_as(&format!("/v1/me/consents/{id}"), &person_token(&other))
        .await;
    let e = r.assert_error(404);
    let n = b
        .delete_as(
            &format!("/v1/me/consents/{}", uuid::Uuid::new_v4()),
            &person_token(&other),
        )
        .await
        .assert_error(404);
    assert_eq!(e["error_description"], n["error_description"]);
    b.delete_as("/v1/me/consents/x", &person_token(&a))
        .await
        .assert_error(400);
    assert_eq!(
        b.get_as(&format!("/v1/debt/{id}"), &tok).await.status,
        200,
        "still active"
    );

    // The person withdraws it: the partner's next use is 403, and its feed
    // shows the withdrawal.
    let r = b
        .delete_as(&format!("/v1/me/consents/{id}"), &person_token(&a))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    fx.reset_stats();
    let e = b
        .get_as(&format!("/v1/debt/{id}"), &tok)
        .await
        .assert_error(403);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("withdrawn")
    );
    assert_eq!(fx.total_customer_calls(), 0);
    let feed = b.get_as("/feed/v1/consent", &tok).await.json();
    let events = feed["events"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["consentId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("created", id.as_str()), ("archived", id.as_str())]
    );
    let c = &b.get_as("/v1/me/consents", &person_token(&a)).await.json()["consents"][0];
    assert_eq!(c["status"], json!("withdrawn"));
    assert_eq!(c["withdrawnBy"], json!("person"));
    let outcomes: Vec<&str> = c["uses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["disclosed", "disclosed", "refused"]);
}
