//! Per-client quotas against the running broker: an organisation sending far
//! beyond its quota gets 429 (with Retry-After and RateLimit-* headers) for the
//! excess, while another organisation's lookups at the same time all succeed.
//! The quota is one request a second, so the counts hold however long the 50
//! requests take to send on a busy machine (up to 20 s).

use crate::common;

use common::{BUREAU, Broker, FI, Fixture, Options, client, token};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_organisation_is_limited_and_the_others_are_not() {
    let fx = Fixture::new(Options::default()).await;
    // The bank gets 1 request per second; the bureau keeps the default 100.
    let text = fx.config_text("127.0.0.1:0", true).replace(
        "roles = [\"financial_institution\"]\n",
        "roles = [\"financial_institution\"]\nrequests_per_second = 1\n",
    );
    let path = fx.dir.path().join("limited.toml");
    std::fs::write(&path, text).unwrap();
    let b = Broker::start(&path).await;
    let nobody = fx.persons_without_debt()[0].clone();
    let url = b.url.clone();

    let send = |org: &'static str, extra: serde_json::Value| {
        let (url, nobody) = (url.clone(), nobody.clone());
        tokio::spawn(async move {
            let mut body = json!({"ssn": nobody, "referenceID": "quota"});
            if let Some(o) = extra.as_str() {
                body["onBehalfOfOrganization"] = json!(o);
            }
            let r = client()
                .post(format!("{url}/api/rest/v2/debt/search"))
                .bearer_auth(token(org, &["debt.search"]))
                .json(&body)
                .send()
                .await
                .unwrap();
            let headers = r.headers().clone();
            (r.status().as_u16(), headers)
        })
    };
    let flood: Vec<_> = (0..50).map(|_| send(FI, json!(null))).collect();
    let others: Vec<_> = (0..20).map(|_| send(BUREAU, json!(FI))).collect();

    let mut admitted = 0;
    let mut limited = 0;
    for t in flood {
        let (status, headers) = t.await.unwrap();
        match status {
            204 => admitted += 1,
            429 => {
                limited += 1;
                assert!(headers.get("retry-after").is_some());
                assert_eq!(headers.get("ratelimit-limit").unwrap(), "1");
                assert_eq!(headers.get("ratelimit-remaining").unwrap(), "0");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited >= 30, "the excess is refused: {limited} of 50");
    assert!(admitted >= 1, "the quota is served: {admitted} of 50");
    for t in others {
        assert_eq!(
            t.await.unwrap().0,
            204,
            "the other organisation is not limited"
        );
    }
    let metrics = client()
        .get(format!("{}/metrics", b.ops_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "gjeldsbro_rate_limited_requests_total{{client=\"{FI}\"}} {limited}"
        )),
        "{metrics}"
    );
}
