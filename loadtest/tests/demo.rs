//! The README's first command, as a test: `gjeldsbro-demo` (what
//! `cargo run --release -- demo` hands over to) starts the simulators, loads
//! the synthetic population, serves the broker, and the token and person it
//! prints give a real answer. Small population, free ports, so it runs beside
//! anything else.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A port free right now (the demo binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `n` consecutive free ports (the demo's lenders sit on base, base+1, ...).
fn free_run(n: u16) -> u16 {
    for _ in 0..50 {
        let base = free_port();
        if base > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_starts_and_its_printed_token_and_person_get_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The broker and, on the next port, the partner page.
    let listen = free_run(2);
    let ops = free_port();
    let lenders = free_run(5);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gjeldsbro-demo"))
        .args(["--data-dir", &dir.path().to_string_lossy()])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--lender-base-port", &lenders.to_string()])
        .args(["--persons", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gjeldsbro-demo");
    let stdout = child.stdout.take().expect("stdout");
    let _demo = Demo(child);

    // Read what it prints until the curl line for the person with debt.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut token, mut body) = (None, None);
    while token.is_none() || body.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the demo printed its token and curl line in time");
        if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
            token = Some(t.to_owned());
        }
        if line.contains("curl -s -X POST") && body.is_none() {
            body = line
                .split("-d '")
                .nth(1)
                .and_then(|rest| rest.strip_suffix('\''))
                .map(str::to_owned);
        }
    }
    let (token, body) = (token.unwrap_or_default(), body.unwrap_or_default());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("http://127.0.0.1:{listen}/api/rest/v2/debt/search"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("search");
        assert_eq!(resp.status(), 200);
        let answer: serde_json::Value = resp.json().await.expect("json");
        let loans = answer["loans"].as_array().expect("loans");
        assert!(!loans.is_empty(), "{answer}");
        // A search names no creditor.
        assert!(
            loans.iter().all(|l| l.get("creditorName").is_none()),
            "{answer}"
        );
        let metrics = client
            .get(format!("http://127.0.0.1:{ops}/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(metrics.status(), 200);
    });
}
