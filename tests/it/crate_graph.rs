//! The walls of the house (issue 13): the production binary's dependency
//! graph holds no simulator, and the core below the HTTP crate holds no axum.
//! Read from the manifests (not `cargo tree`, which would wait on the lock
//! the running `cargo test` holds).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    text.parse().expect("toml")
}

/// Every workspace package by name, with its folder.
fn packages() -> HashMap<String, PathBuf> {
    let ws = manifest(&root());
    let members = ws["workspace"]["members"].as_array().expect("members");
    members
        .iter()
        .map(|m| {
            let dir = root().join(m.as_str().expect("member"));
            let name = manifest(&dir)["package"]["name"]
                .as_str()
                .expect("name")
                .to_owned();
            (name, dir)
        })
        .collect()
}

/// The normal (not dev, not build) dependencies of `package`, transitively,
/// by name: workspace packages are followed, others listed.
fn normal_closure(package: &str) -> BTreeSet<String> {
    let packages = packages();
    let mut seen = BTreeSet::new();
    let mut todo = vec![package.to_owned()];
    while let Some(p) = todo.pop() {
        let Some(dir) = packages.get(&p) else {
            continue;
        };
        let m = manifest(dir);
        let Some(deps) = m.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for name in deps.keys() {
            if seen.insert(name.clone()) {
                todo.push(name.clone());
            }
        }
    }
    seen
}

#[test]
fn the_production_binary_carries_no_simulator() {
    let deps = normal_closure("gjeldsbro");
    assert!(deps.contains("gjeldsbro-http"), "{deps:?}");
    assert!(
        !deps.contains("gjeldsbro-loadtest"),
        "the server depends on the simulators: {deps:?}"
    );
    assert!(
        !deps.contains("gjeldsbro-lender-check"),
        "the lenders' go-live kit ships inside the server: {deps:?}"
    );
}

#[test]
fn the_core_knows_no_axum_and_the_store_no_broker() {
    let core = normal_closure("gjeldsbro-broker");
    for http in ["axum", "maud", "gjeldsbro-http"] {
        assert!(!core.contains(http), "gjeldsbro-broker reaches {http}");
    }
    let store = normal_closure("gjeldsbro-store");
    assert!(!store.contains("gjeldsbro-broker"), "{store:?}");
    let index = normal_closure("gjeldsbro-index");
    assert!(
        !index.iter().any(|d| d == "sqlx" || d == "tokio"),
        "the index does no I/O: {index:?}"
    );
    let kit = normal_closure("gjeldsbro-lender-check");
    assert!(
        !kit.contains("gjeldsbro-broker"),
        "lender-check needs neither the broker nor its store: {kit:?}"
    );
    let domain = normal_closure("gjeldsbro-domain");
    assert!(
        !domain.iter().any(|d| d.starts_with("gjeldsbro")),
        "the domain sits above nothing: {domain:?}"
    );
}
