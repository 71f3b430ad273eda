//! Test and load-test tooling for Gjeldsbro: a deterministic synthetic population
//! ([`population`]), a steerable lender simulator speaking API-DEBT-FI ([`sim`]),
//! simulators of the other debt sources: a student-loan saldo API with its
//! token endpoint ([`student_loan_sim`]) and a collection agency ([`collection_sim`]),
//! and an open-model load generator that compares the broker with calling the
//! lenders directly ([`scenario`], [`openloop`], [`runner`], [`report`]).
//! Every national id produced here is a synthetic (Tenor, month + 80) id.

pub mod broker;
pub mod chart;
pub mod collection_sim;
pub mod demo;
/// The generator itself is its own crate, shared with `lender-check`.
pub use gjeldsbro_openloop as openloop;
pub mod population;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sim;
mod source_sim;
pub mod student_loan_sim;
pub mod targets;
mod tls;
pub mod workload;

pub use population::{LenderSpec, Population, generate};
pub use sim::{Behaviour, Fault, Flapping, Latency, SimHandle, SimStats, SimTls, spawn, spawn_tls};
pub use source_sim::SourceFault;

/// Reads a getalldata JSON file (`{"providerID", "customers"}`).
pub fn read_dataset(
    path: impl AsRef<std::path::Path>,
) -> anyhow::Result<gjeldsbro_adapter::DatasetPage> {
    use anyhow::Context;
    let path = path.as_ref();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!(gjeldsbro_adapter::scrub(&e.to_string())))
        .with_context(|| format!("parsing {}", path.display()))
}
