//! Request validation on the wire: every bad input is a 4xx with the error JSON,
//! never a 500; trace ids are echoed (unless they look like a national id).

use crate::common;

use common::{Broker, Fixture, Options, SEARCH_PATH, fi_token, with_control_digits};
use serde_json::{Value, json};

/// Asserts a 400 for `body` and that the error text does not quote any id in it.
async fn bad(b: &Broker, body: Value, what: &str) {
    let r = b.search_as(&fi_token(), &body).await;
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let v = r.assert_error(400);
    assert_eq!(v["error"], json!("invalid_request"), "{what}");
    for field in ["ssn"] {
        if let Some(s) = body[field].as_str()
            && s.len() >= 6
        {
            assert!(!r.text().contains(s), "{what}: error echoes the id");
        }
    }
}

/// Ids breaking each rule (synthetic month + 80 where a month appears).
fn invalid_ids(valid: &str) -> Vec<(&'static str, String)> {
    let mut bad_k2 = valid.as_bytes().to_vec();
    bad_k2[10] = b'0' + (bad_k2[10] - b'0' + 1) % 10;
    // 31 February (synthetic month 82), with correct control digits.
    let feb31 = (100..500)
        .find_map(|i| with_control_digits(&format!("318270{i:03}")))
        .unwrap();
    // Month 13 (synthetic 93).
    let month13 = (100..500)
        .find_map(|i| with_control_digits(&format!("019370{i:03}")))
        .unwrap();
    // A d-number of 30 February (day 30 + 40 = 70).
    let d_feb30 = (100..500)
        .find_map(|i| with_control_digits(&format!("708270{i:03}")))
        .unwrap();
    // Day 00.
    let day0 = (100..500)
        .find_map(|i| with_control_digits(&format!("008170{i:03}")))
        .unwrap();
    vec![
        ("bad checksum", String::from_utf8(bad_k2).unwrap()),
        ("31 February", feb31),
        ("month 13", month13),
        ("d-number 30 February", d_feb30),
        ("day 00", day0),
        ("10 digits", valid[..10].to_owned()),
        ("12 digits", format!("{valid}0")),
        ("letters", format!("{}ab", &valid[..9])),
        ("all letters", "abcdefghijk".to_owned()),
        ("spaces", format!(" {}", &valid[..10])),
        ("empty", String::new()),
        ("unicode digits", "١٢٣٤٥٦٧٨٩٠١".to_owned()),
    ]
}

#[tokio::test]
async fn national_id_rules_reach_the_wire_as_400() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let valid = fx.persons_with_lenders(1)[0].clone();
    for (what, id) in invalid_ids(&valid) {
        bad(&b, json!({"ssn": id, "referenceID": "v"}), what).await;
        // The same id as a co-borrower.
        bad(
            &b,
            json!({"ssn": valid, "referenceID": "v", "coBorrowers": [{"ssn": id}]}),
            what,
        )
        .await;
    }
    // Missing ssn, ssn of the wrong JSON type (the number must not be echoed).
    bad(&b, json!({"referenceID": "v"}), "no ssn").await;
    let r = b
        .post_raw(
            SEARCH_PATH,
            Some(&fi_token()),
            format!("{{\"ssn\": {valid}, \"referenceID\": \"v\"}}").into_bytes(),
            &[],
        )
        .await;
    r.assert_error(400);
    assert!(!r.text().contains(&valid), "a numeric ssn was echoed");
    bad(&b, json!({"ssn": null, "referenceID": "v"}), "null ssn").await;
    bad(
        &b,
        json!({"ssn": valid, "referenceID": "v", "coBorrowers": [{}]}),
        "co-borrower without ssn",
    )
    .await;
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "an invalid search reached a lender"
    );
    // The valid one works.
    assert_eq!(b.search(&valid).await.status, 200);
}

#[tokio::test]
async fn synthetic_ids_are_refused_when_not_accepted() {
    let fx = Fixture::new(Options::default()).await;
    let lenient = fx.broker().await;
    let valid = fx.persons_with_lenders(1)[0].clone();
    assert_eq!(lenient.search(&valid).await.status, 200);
    // A second broker on the same store, with accept_synthetic_ids = false.
    let strict_config = fx.write_config("strict.toml", "127.0.0.1:0", false);
    let strict = Broker::start(&strict_config).await;
    fx.reset_stats();
    let r = strict.search(&valid).await;
    let v = r.assert_error(400);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("synthetic"),
        "{v}"
    );
    let r = strict
        .search_as(
            &fi_token(),
            &json!({"ssn": valid, "referenceID": "v", "coBorrowers": [{"ssn": fx.pop.persons()[5]}]}),
        )
        .await;
    r.assert_error(400);
    assert_eq!(fx.total_customer_calls(), 0);
}

#[tokio::test]
async fn request_fields_are_checked() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let token = fi_token();

    bad(&b, json!({"ssn": p}), "missing referenceID").await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": "   "}),
        "blank referenceID",
    )
    .await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": 17}),
        "numeric referenceID",
    )
    .await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": "x".repeat(101)}),
        "long referenceID",
    )
    .await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": "v", "messageToCustomer": "m".repeat(101)}),
        "long message",
    )
    .await;
    for wait in [
        json!(999),
        json!(60001),
        json!(0),
        json!(-1),
        json!("3000"),
        json!(1500.5),
    ] {
        bad(
            &b,
            json!({"ssn": p, "referenceID": "v", "maxTimeToWait": wait}),
            &format!("maxTimeToWait {wait}"),
        )
        .await;
    }
    for wait in [1000, 60000] {
        let r = b
            .search_as(
                &token,
                &json!({"ssn": p, "referenceID": "v", "maxTimeToWait": wait}),
            )
            .await;
        assert_eq!(r.status, 200, "maxTimeToWait {wait}: {}", r.text());
    }
    let valid_calls = fx.total_customer_calls();
    assert!(valid_calls >= 2);
    fx.reset_stats();
    let many: Vec<_> = fx.pop.persons()[10..21]
        .iter()
        .map(|c| json!({"ssn": c}))
        .collect();
    bad(
        &b,
        json!({"ssn": p, "referenceID": "v", "coBorrowers": many}),
        "11 co-borrowers",
    )
    .await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": "v", "coBorrowers": {"ssn": p}}),
        "coBorrowers not a list",
    )
    .await;
    bad(
        &b,
        json!({"ssn": p, "referenceID": "v", "usingOwnNotification": "yes"}),
        "usingOwnNotification not a bool",
    )
    .await;
    bad(&b, json!([p]), "a list body").await;

    // Malformed JSON with the right content type.
    for raw in [
        &b"{"[..],
        b"{\"ssn\": ",
        b"not json",
        b"",
        b"{\"ssn\": \"x\", }",
        b"\xff\xfe",
    ] {
        let r = b
            .post_raw(SEARCH_PATH, Some(&token), raw.to_vec(), &[])
            .await;
        r.assert_error(400);
    }
    // The wrong content type.
    let r = common::Resp::from(
        b.client
            .post(format!("{}{SEARCH_PATH}", b.url))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(serde_json::to_vec(&json!({"ssn": p, "referenceID": "v"})).unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(415);
    // Body over 1 MiB (with and without a token).
    let mut big =
        format!("{{\"ssn\":\"{p}\",\"referenceID\":\"v\",\"messageToCustomer\":\"").into_bytes();
    big.resize(1024 * 1024 + 10, b'a');
    big.extend_from_slice(b"\"}");
    let r = b
        .post_raw(SEARCH_PATH, Some(&token), big.clone(), &[])
        .await;
    r.assert_error(413);
    let r = b.post_raw(SEARCH_PATH, None, big.clone(), &[]).await;
    assert!(matches!(r.status, 401 | 413), "{}", r.status);
    // The same without a Content-Length (chunked).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = common::Resp::from(
        b.client
            .post(format!("{}{SEARCH_PATH}", b.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(413);
    // An Authorization header that is not even text.
    let r = common::Resp::from(
        b.client
            .post(format!("{}{SEARCH_PATH}", b.url))
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe.a.b").unwrap(),
            )
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&json!({"ssn": p, "referenceID": "v"})).unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(401);
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "an invalid search reached a lender"
    );
}

#[tokio::test]
async fn routes_methods_and_trace_ids() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let p = fx.persons_with_lenders(1)[0].clone();
    let token = fi_token();

    let r = b.get("/api/rest/v2/debt/nothing-here").await;
    let v = r.assert_error(404);
    assert_eq!(v["error"], json!("not_found"));
    let r = b.post_raw("/nope", Some(&token), b"{}".to_vec(), &[]).await;
    r.assert_error(404);
    let r = b.get(SEARCH_PATH).await;
    r.assert_error(405);

    // A caller's trace id is echoed in the header and the error body.
    let r = b
        .post_raw(
            SEARCH_PATH,
            Some(&token),
            b"{".to_vec(),
            &[("x-trace-id", "abc-123_x.y:z")],
        )
        .await;
    let v = r.assert_error(400);
    assert_eq!(v["trace_id"], json!("abc-123_x.y:z"));
    assert_eq!(r.header("x-trace-id"), Some("abc-123_x.y:z"));
    // ...and on success.
    let r = b
        .post_raw(
            SEARCH_PATH,
            Some(&token),
            serde_json::to_vec(&json!({"ssn": p, "referenceID": "v"})).unwrap(),
            &[("x-trace-id", "ok-trace-7")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-trace-id"), Some("ok-trace-7"));
    // A trace id holding a national id is replaced, not echoed.
    let sneaky = format!("req-{p}-1");
    let r = b
        .post_raw(
            SEARCH_PATH,
            Some(&token),
            b"{".to_vec(),
            &[("x-trace-id", &sneaky)],
        )
        .await;
    let v = r.assert_error(400);
    assert!(!r.text().contains(&p));
    assert_ne!(v["trace_id"], json!(sneaky));
    assert!(!r.header("x-trace-id").unwrap().contains(&p));
    // Without one, a fresh one is made.
    let r = b.get("/nope").await;
    let v = r.assert_error(404);
    assert!(v["trace_id"].as_str().unwrap().len() >= 16);
    // An id in a URL reaches neither the error nor a metric label (the consent
    // lookup route exists: without a token it is 401).
    let r = b.get(&format!("/v1/debt/{p}")).await;
    r.assert_error(401);
    let r = b.get(&format!("/v1/debt/{p}/nothing-here")).await;
    r.assert_error(404);
    assert!(!r.text().contains(&p));
    let metrics = b.ops_get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("gjeldsbro_http_server_requests_total"));
    assert!(!text.contains(&p), "a national id in the metrics");
    assert!(!text.contains("nothing-here"), "raw paths as metric labels");
    // Health endpoints work.
    assert_eq!(b.get("/healthz").await.status, 200);
    assert_eq!(b.get("/readyz").await.status, 200);
}
