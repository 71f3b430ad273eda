//! The broker's integration tests: one test binary, one module per subject.
//!
//! One binary instead of one per file: the broker and its dependencies are
//! linked once (not 33 times) and `common` is compiled once. Each module
//! starts the real broker on loopback with the simulated lenders and real
//! stores (SQLite in a temporary directory, PostgreSQL where it runs).
//! Run one subject with `cargo test --test it <module>::`.

mod common;

mod audit_verify;
mod auth_http;
mod both_stores;
mod breaker;
mod cache;
mod chain_v1;
mod consents;
mod crash;
mod crate_graph;
mod disclosures;
mod embed_browser;
mod faults;
mod ingest_cli;
mod instances;
mod lender_limits;
mod letters;
mod loadtest_smoke;
mod logs;
mod lookup;
mod observability;
mod openapi;
mod other_sources;
mod overload;
mod own_view;
mod panels;
mod pull;
mod push;
mod rate_limits;
mod redaction;
mod retries;
mod security;
mod store_backends;
mod tls;
mod validation;
