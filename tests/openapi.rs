//! The OpenAPI descriptions in docs/openapi/ stay current: every route the
//! router serves is described in one of them.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The paths given to `.route("...")` in a source file.
fn routes(source: &str) -> Vec<String> {
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[test]
fn every_route_is_described() {
    let docs = read("docs/openapi/client-api.yaml") + &read("docs/openapi/lender-api.yaml");
    let routes = routes(&read("src/http/mod.rs"));
    assert!(
        routes.iter().any(|r| r == "/api/rest/v2/debt/search"),
        "the route scan works: {routes:?}"
    );
    for r in routes {
        assert!(
            docs.contains(&format!("\n  {r}:\n")),
            "{r} is served but not in docs/openapi/"
        );
    }
}
