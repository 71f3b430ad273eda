//! The answer cache and in-flight sharing against the real broker and simulated
//! lenders: identical concurrent lookups cost one call per lender (and every one
//! is still recorded), a cached answer is reused, and a push drops it.

use crate::common;

use std::sync::Arc;

use common::{Broker, Fixture, Options, client, fi_token};
use gjeldsbro_loadtest::sim::{Behaviour, Fault, Latency};
use serde_json::json;

async fn search(url: &str, ssn: &str) -> (u16, String) {
    let r = client()
        .post(format!("{url}/api/rest/v2/debt/search"))
        .bearer_auth(fi_token())
        .json(&json!({"ssn": ssn, "referenceID": "cache"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Lender 0 pushes one charge card for `person` through `broker`; then its
/// live API fails, so a lookup shows the card only from the snapshot, that is
/// only once a cached answer is gone.
async fn push_then_fail(fx: &Fixture, broker: &Broker, person: &str, account: &str, amount: i64) {
    let org = &fx.specs[0].org_no;
    let body = json!({"providerID": format!("9908:{org}"), "customers": [{
        "customerID": person, "financialInstitutionID": org,
        "loans": [{"type": "chargeCard", "accountID": account, "coBorrower": 0,
                   "interestBearingBalance": amount, "nonInterestBearingBalance": 0}]}]});
    broker
        .state
        .ingestor
        .push(
            org,
            std::io::Cursor::new(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_identical_lookups_cost_one_call_per_lender() {
    // A timeout well beyond the lenders' latency: on a busy machine a call that
    // timed out would not be cached, and the next lookup would call again.
    let fx = Fixture::new(Options {
        timeout_ms: 3000,
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(2)[0].clone();
    let lenders = fx.indexed_lenders(&person);
    // Slow lenders, so the 50 lookups overlap in flight.
    for &l in &lenders {
        fx.sim(l).set_behaviour(Behaviour {
            latency: Latency::Fixed { ms: 200 },
            ..Behaviour::default()
        });
    }
    let url = Arc::new(b.url.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (url, person) = (url.clone(), person.clone());
            tokio::spawn(async move { search(&url, &person).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    for &l in &lenders {
        assert_eq!(fx.sim(l).calls_for(&person), 1, "lender {l}");
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every lookup got the same answer"
    );
    // Shared, not skipped: every lookup was still recorded.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", fx.db_path.display()))
        .await
        .unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM disclosures WHERE reference_id = 'cache'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_answer_is_reused_until_a_push_drops_it() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let person = fx.persons_at(0)[0].clone();
    assert_eq!(search(&b.url, &person).await.0, 200);
    assert_eq!(search(&b.url, &person).await.0, 200);
    assert_eq!(
        fx.sim(0).calls_for(&person),
        1,
        "the second lookup reused the answer"
    );

    // The lender pushes a new loan; its live API now fails, so the next lookup
    // shows the new loan only if the cached answer was dropped.
    push_then_fail(&fx, &b, &person, "NEW-1", 77_700).await;
    let (status, answer) = search(&b.url, &person).await;
    assert_eq!(status, 200);
    assert_eq!(
        fx.sim(0).calls_for(&person),
        2,
        "the push dropped the cached answer"
    );
    assert!(
        answer.contains("77700"),
        "the pushed loan is shown: {answer}"
    );
}

/// A lender's new dataset means its older answers may be stale: the cache's
/// epoch for that lender moves on, so the next lookup asks the lender again.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_dataset_makes_the_lenders_cached_answers_unusable() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let person = fx.persons_at(0)[0].clone();
    assert_eq!(search(&b.url, &person).await.0, 200);
    assert_eq!(search(&b.url, &person).await.0, 200);
    assert_eq!(fx.sim(0).calls_for(&person), 1, "the answer was cached");

    let bytes = std::fs::read(fx.dataset_file(0)).unwrap();
    b.state
        .ingestor
        .load_dataset(
            &fx.specs[0].id,
            std::io::Cursor::new(bytes),
            "file",
            "itest",
            false,
        )
        .await
        .unwrap();
    assert_eq!(search(&b.url, &person).await.0, 200);
    assert_eq!(
        fx.sim(0).calls_for(&person),
        2,
        "after the new dataset the cached answer was not reused"
    );
}

/// Two instances on one store: a push to one drops the other's cached answer
/// (its change follower invalidates it), so the other shows the pushed loan.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_one_instance_drops_the_others_cached_answer() {
    let fx = Fixture::new(Options::default()).await;
    // A TTL far beyond the wait below: only the invalidation can drop the answer.
    let long_ttl = |text: String| {
        let at = text.find("[[lenders]]").unwrap();
        format!("{}[cache]\nttl_ms = 600000\n\n{}", &text[..at], &text[at..])
    };
    let a = fx.broker_with(long_ttl).await;
    let other = fx.broker_with(long_ttl).await;
    let person = fx.persons_at(0)[0].clone();
    assert_eq!(search(&other.url, &person).await.0, 200);
    assert_eq!(search(&other.url, &person).await.0, 200);
    assert_eq!(fx.sim(0).calls_for(&person), 1, "the answer was cached");

    // Pushed to `a`; the other instance shows the pushed loan (from the
    // snapshot, the live API now failing) only once its cached answer is gone.
    push_then_fail(&fx, &a, &person, "NEW-2", 66_600).await;
    let shown = common::eventually(std::time::Duration::from_secs(30), || async {
        let (status, answer) = search(&other.url, &person).await;
        status == 200 && answer.contains("66600")
    })
    .await;
    assert!(shown, "the other instance kept serving its cached answer");
}
