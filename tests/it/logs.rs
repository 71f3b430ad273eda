//! The real `gjeldsbro serve` at debug level: its log output never holds a
//! national id or a token, whatever the requests carried.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{AUDIENCE, BUREAU, FI, Fixture, ISSUER, Options, SEARCH_PATH, fi_token, token};
use gjeldsbro::auth::devtoken::{self, DEV_KID, DevClaims};
use gjeldsbro_loadtest::sim::{Behaviour, Fault};
use serde_json::json;

#[tokio::test]
async fn logs_hold_no_national_id_and_no_token() {
    let fx = Fixture::new(Options {
        lenders: 3,
        persons: 200,
        seed: 5,
        ..Options::default()
    })
    .await;
    let port = common::closed_port();
    let config = fx.write_config("serve.toml", &format!("127.0.0.1:{port}"), true);
    for (i, spec) in fx.specs.iter().enumerate() {
        gjeldsbro::cli::ingest(&config, &spec.id, &fx.dataset_file(i))
            .await
            .expect("ingest");
    }
    let log_path = fx.dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("GJELDSBRO_LOG", "debug")
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(
            std::fs::File::create(fx.dir.path().join("serve.out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .expect("start gjeldsbro serve");
    let url = format!("http://127.0.0.1:{port}");
    let client = common::client();
    let up = common::eventually(Duration::from_secs(15), || {
        let c = client.clone();
        let u = format!("{url}/readyz");
        async move { c.get(u).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "broker did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    // One lender answers garbage, one the wrong customer: error paths log too.
    fx.sim(1).set_behaviour(Behaviour {
        fault: Fault::Garbage,
        ..Behaviour::default()
    });
    fx.sim(2).set_behaviour(Behaviour {
        fault: Fault::WrongCustomer,
        ..Behaviour::default()
    });

    let with = fx.persons_with_lenders(2);
    let without = fx.persons_without_debt();
    let mut bad_id = with[5].clone().into_bytes();
    bad_id[10] = b'0' + (bad_id[10] - b'0' + 1) % 10;
    let bad_id = String::from_utf8(bad_id).unwrap();
    let mut ids: Vec<String> = vec![
        with[0].clone(),
        with[1].clone(),
        with[2].clone(),
        with[3].clone(),
        with[4].clone(),
        without[0].clone(),
        without[1].clone(),
        bad_id.clone(),
    ];

    let fi = fi_token();
    let bureau = token(BUREAU, &["debt.search"]);
    let expired = devtoken::mint(
        &common::dev_key(),
        DEV_KID,
        "https://evil.example",
        AUDIENCE,
        DevClaims {
            org_no: Some(FI.into()),
            scopes: vec!["debt.search".into()],
            pid: None,
            ttl_secs: 60,
        },
    )
    .unwrap();
    let pid_token = devtoken::mint(
        &common::dev_key(),
        DEV_KID,
        ISSUER,
        AUDIENCE,
        DevClaims {
            org_no: None,
            scopes: vec![],
            pid: Some(with[6].clone()),
            ttl_secs: 60,
        },
    )
    .unwrap();
    ids.push(with[6].clone());
    let unknown_org = token(common::STRANGER, &["debt.search"]);
    let mut tokens = vec![
        fi.clone(),
        bureau.clone(),
        expired.clone(),
        pid_token.clone(),
        unknown_org.clone(),
    ];

    let post = |tok: Option<&str>, body: Vec<u8>, trace: Option<&str>| {
        let mut req = client
            .post(format!("{url}{SEARCH_PATH}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        if let Some(t) = trace {
            req = req.header("x-trace-id", t);
        }
        async move { req.send().await.expect("request").status().as_u16() }
    };
    let body = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();

    let mut lookups = 0;
    // A good search, one with co-borrowers, one via a bureau, a 204.
    assert_eq!(
        post(
            Some(&fi),
            body(json!({"ssn": with[0], "referenceID": "log-1"})),
            None
        )
        .await,
        200
    );
    lookups += 1;
    let co = json!({"ssn": with[1], "referenceID": "log-2",
        "coBorrowers": [{"ssn": with[2]}, {"ssn": without[0]}]});
    assert_eq!(post(Some(&fi), body(co), None).await, 200);
    lookups += 1;
    let via = json!({"ssn": with[3], "referenceID": "log-3", "onBehalfOfOrganization": FI});
    assert_eq!(post(Some(&bureau), body(via), None).await, 200);
    lookups += 1;
    assert_eq!(
        post(
            Some(&fi),
            body(json!({"ssn": without[1], "referenceID": "log-4"})),
            None
        )
        .await,
        204
    );
    lookups += 1;
    // Invalid ids, as applicant and as co-borrower; an id as a JSON number.
    assert_eq!(
        post(
            Some(&fi),
            body(json!({"ssn": bad_id, "referenceID": "log-5"})),
            None
        )
        .await,
        400
    );
    let co_bad = json!({"ssn": with[4], "referenceID": "log-6", "coBorrowers": [{"ssn": bad_id}]});
    assert_eq!(post(Some(&fi), body(co_bad), None).await, 400);
    let numeric = format!("{{\"ssn\": {}, \"referenceID\": \"log-7\"}}", with[4]);
    assert_eq!(post(Some(&fi), numeric.into_bytes(), None).await, 400);
    // Bad tokens, each with a real id in the body.
    for t in [&expired, &pid_token, &unknown_org] {
        let s = post(
            Some(t),
            body(json!({"ssn": with[4], "referenceID": "log-8"})),
            None,
        )
        .await;
        assert!(matches!(s, 401 | 403), "{s}");
    }
    assert_eq!(
        post(
            Some("garbage.token.here"),
            body(json!({"ssn": with[4], "referenceID": "x"})),
            None
        )
        .await,
        401
    );
    // A trace id holding an id, on a good and on a bad request.
    let sneaky = format!("trace-{}-x", with[4]);
    assert_eq!(
        post(
            Some(&fi),
            body(json!({"ssn": with[4], "referenceID": "log-9"})),
            Some(&sneaky)
        )
        .await,
        200
    );
    lookups += 1;
    assert_eq!(post(Some(&fi), b"{".to_vec(), Some(&sneaky)).await, 400);
    // An id in a URL (the consent lookup route: refused, and never logged).
    let s = client
        .get(format!("{url}/v1/debt/{}", with[4]))
        .bearer_auth(&fi)
        .send()
        .await
        .unwrap()
        .status();
    assert!(matches!(s.as_u16(), 400 | 403 | 404), "{s}");

    // Consents and the own view (issue 5): ids in bodies and tokens only.
    let partner = token(
        common::PARTNER,
        &[
            "consent.create",
            "debt.unsecured.presentation",
            "client.access.consent.events",
        ],
    );
    let person = common::person_token(&with[7]);
    ids.push(with[7].clone());
    tokens.push(partner.clone());
    tokens.push(person.clone());
    let agreement = client
        .put(format!("{url}/v1/consent/agreement"))
        .bearer_auth(&partner)
        .json(
            &json!({"nin": with[7], "scope_of_consent": "debt.unsecured.presentation",
            "consent_duration_days": 0, "client_consent_id": "log-consent"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(agreement.status(), 200);
    let consent: serde_json::Value = agreement.json().await.unwrap();
    let consent_id = consent["consent"]["id"].as_str().unwrap().to_owned();
    let bad = client
        .put(format!("{url}/v1/consent/agreement"))
        .bearer_auth(&partner)
        .json(
            &json!({"nin": bad_id, "scope_of_consent": "debt.unsecured.presentation",
            "consent_duration_days": 0, "client_consent_id": "log-bad"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    for (path, tok, status) in [
        (format!("/v1/debt/{consent_id}"), &partner, 200),
        (format!("/v1/debt/{consent_id}"), &partner, 403),
        (format!("/v1/debt/{consent_id}/status"), &partner, 200),
        ("/feed/v1/consent".to_owned(), &partner, 200),
        ("/v1/me/debt".to_owned(), &person, 200),
        ("/v1/me/consents".to_owned(), &person, 200),
        ("/v1/me/disclosures".to_owned(), &person, 200),
    ] {
        let r = client
            .get(format!("{url}{path}"))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
    // The consent lookup and the own view each log one lookup line.
    lookups += 2;

    // Let the last lines reach the file, then stop the broker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("kill");
    child.wait().expect("wait");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let out = std::fs::read_to_string(fx.dir.path().join("serve.out")).unwrap();
    let all = format!("{log}{out}");

    // The capture works: the lookup lines and refusals are there.
    let lookup_lines = log
        .lines()
        .filter(|l| l.contains("\"message\":\"lookup\""))
        .count();
    assert_eq!(lookup_lines, lookups, "lookup lines missing:\n{log}");
    assert!(log.contains("caller refused"), "no debug lines:\n{log}");

    for id in &ids {
        assert!(!all.contains(id.as_str()), "a national id in the logs");
    }
    for t in &tokens {
        assert!(!all.contains(t.as_str()), "a token in the logs");
        // Nor its signature or payload alone.
        for part in t.split('.').skip(1) {
            assert!(!all.contains(part), "part of a token in the logs");
        }
    }
    assert!(!all.contains(&sneaky));
}
