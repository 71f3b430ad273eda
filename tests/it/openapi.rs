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
    let routes = routes(&read("crates/http/src/lib.rs"));
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

// ---- Examples: every documented example validates against its schema. ----
//
// OpenAPI 3.1 schemas are JSON Schema 2020-12, so the documents are checked
// with a real validator rather than by eye. `$ref`s point into the same
// document (`#/components/...`): each schema is validated as a root that
// carries the document's `components`, so references (also recursive ones,
// like `DebtInformation.coBorrowers`) resolve without inlining.

use gjeldsbro::nin::{IdPolicy, NationalId};
use serde_json::Value;

const DOCS: [&str; 2] = [
    "docs/openapi/client-api.yaml",
    "docs/openapi/lender-api.yaml",
];

fn load(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// One example and the schema it must satisfy, with where it was found.
struct Example {
    at: String,
    schema: Value,
    value: Value,
}

/// Follows a local `$ref` (`#/a/b`) to its target.
fn deref<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {r} points nowhere"))
        }
        None => node,
    }
}

/// Every example in `doc`: `example`/`examples` beside a `schema` (media
/// types, parameters, headers), and `examples` (an array) or the older
/// `example` inside a schema.
fn examples(doc: &Value) -> Vec<Example> {
    let mut out = Vec::new();
    walk(doc, doc, "#", &mut out);
    out
}

fn walk(doc: &Value, node: &Value, at: &str, out: &mut Vec<Example>) {
    match node {
        Value::Object(map) => {
            if let Some(schema) = map.get("schema") {
                if let Some(v) = map.get("example") {
                    out.push(Example {
                        at: format!("{at}/example"),
                        schema: schema.clone(),
                        value: v.clone(),
                    });
                }
                if let Some(Value::Object(named)) = map.get("examples") {
                    for (name, ex) in named {
                        let ex = deref(doc, ex);
                        if let Some(v) = ex.get("value") {
                            out.push(Example {
                                at: format!("{at}/examples/{name}"),
                                schema: schema.clone(),
                                value: v.clone(),
                            });
                        }
                    }
                }
            } else {
                if let Some(Value::Array(values)) = map.get("examples") {
                    for (i, v) in values.iter().enumerate() {
                        out.push(Example {
                            at: format!("{at}/examples/{i}"),
                            schema: node.clone(),
                            value: v.clone(),
                        });
                    }
                }
                if let Some(v) = map.get("example") {
                    out.push(Example {
                        at: format!("{at}/example"),
                        schema: node.clone(),
                        value: v.clone(),
                    });
                }
            }
            for (k, v) in map {
                walk(
                    doc,
                    v,
                    &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(doc, v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The validation errors of `example` against its schema (none when valid).
fn problems(doc: &Value, example: &Example) -> Vec<String> {
    let mut root = match &example.schema {
        Value::Object(m) => m.clone(),
        other => panic!("{}: the schema is not an object: {other}", example.at),
    };
    // The schema's own keywords plus the document's components, so that
    // `#/components/...` resolves against this root.
    if let Some(c) = doc.get("components") {
        root.insert("components".into(), c.clone());
    }
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("{}: the schema does not compile: {e}", example.at));
    validator
        .iter_errors(&example.value)
        .map(|e| format!("{}: {} (at {})", example.at, e, e.instance_path()))
        .collect()
}

/// Every string of 11 digits in an example is a synthetic (Tenor) id: no
/// real person's national id is ever published in the docs.
fn real_looking_ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit()) => {
            let synthetic = NationalId::parse(s, IdPolicy::SYNTHETIC_OK)
                .map(|id| id.is_synthetic())
                .unwrap_or(false);
            if !synthetic {
                out.push(s.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| real_looking_ids(v, out)),
        Value::Object(map) => map.values().for_each(|v| real_looking_ids(v, out)),
        _ => {}
    }
}

#[test]
fn documents_declare_openapi_3_1() {
    for rel in DOCS {
        let version = load(rel)["openapi"].as_str().map(str::to_owned);
        assert!(
            version.as_deref().is_some_and(|v| v.starts_with("3.1.")),
            "{rel}: openapi is {version:?}, expected 3.1.x"
        );
    }
}

#[test]
fn every_example_validates_against_its_schema() {
    let mut all = Vec::new();
    let mut count = 0;
    for rel in DOCS {
        let doc = load(rel);
        for ex in examples(&doc) {
            count += 1;
            all.extend(
                problems(&doc, &ex)
                    .into_iter()
                    .map(|p| format!("{rel} {p}")),
            );
            let mut ids = Vec::new();
            real_looking_ids(&ex.value, &mut ids);
            assert!(
                ids.is_empty(),
                "{rel} {}: an example holds an 11-digit id that is not synthetic",
                ex.at
            );
        }
    }
    assert!(count >= 20, "the example scan works: found {count}");
    assert!(all.is_empty(), "broken examples:\n{}", all.join("\n"));
}

/// The main requests and answers carry examples (a reader copies them).
#[test]
fn main_operations_have_examples() {
    let wanted = [
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1api~1rest~1v2~1debt~1search/post/requestBody/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1api~1rest~1v2~1debt~1search/post/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1v1~1consent~1agreement/put/requestBody/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1v1~1consent~1agreement/put/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1v1~1debt~1{consent_id}/get/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/paths/~1feed~1v1~1consent/get/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/client-api.yaml",
            "/components/responses/BadRequest/content/application~1json",
        ),
        (
            "docs/openapi/lender-api.yaml",
            "/paths/~1debt-information~1v1~1loans~1{financialInstitutionID}~1customer/get/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/lender-api.yaml",
            "/paths/~1debt-information~1v1~1loans~1{financialInstitutionID}~1customer/get/responses/400/content/application~1json",
        ),
        (
            "docs/openapi/lender-api.yaml",
            "/paths/~1debt-information~1v1~1loans~1{financialInstitutionID}/get/responses/200/content/application~1json",
        ),
        (
            "docs/openapi/lender-api.yaml",
            "/paths/~1debt-information~1v1~1loans/post/requestBody/content/application~1json",
        ),
    ];
    for (rel, pointer) in wanted {
        let doc = load(rel);
        let media = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{rel}: nothing at {pointer}"));
        assert!(
            media.get("example").is_some() || media.get("examples").is_some(),
            "{rel}: no example at {pointer}"
        );
    }
}

/// The check itself catches a broken example: without this, a validator that
/// accepted everything would pass the test above.
#[test]
fn a_broken_example_is_caught() {
    let mut doc = load("docs/openapi/lender-api.yaml");
    let pointer = "/paths/~1debt-information~1v1~1loans~1{financialInstitutionID}~1customer/get/responses/200/content/application~1json/examples/holder/value/loans/0";
    let loan = doc.pointer_mut(pointer).unwrap();
    loan["balance"] = serde_json::json!(-5);
    loan.as_object_mut().unwrap().remove("coBorrower");
    let broken: Vec<String> = examples(&doc)
        .iter()
        .flat_map(|ex| problems(&doc, ex))
        .collect();
    assert!(
        broken
            .iter()
            .any(|p| p.contains("examples/holder") && p.contains("-5")),
        "{broken:?}"
    );
    assert!(
        broken.iter().any(|p| p.contains("coBorrower")),
        "{broken:?}"
    );

    // A wrong type deep behind a recursive $ref, and a schema-level example.
    let mut doc = load("docs/openapi/client-api.yaml");
    let pointer = "/paths/~1api~1rest~1v2~1debt~1search/post/responses/200/content/application~1json/example/coBorrowers/0/loans/0/loan/type";
    *doc.pointer_mut(pointer).unwrap() = serde_json::json!("mortgage");
    *doc.pointer_mut("/components/schemas/ErrorBody/properties/error/examples/0")
        .unwrap() = serde_json::json!(42);
    // Formats are validated too (a date-time that is not one).
    *doc.pointer_mut(
        "/paths/~1v1~1debt~1{consent_id}~1status/get/responses/200/content/application~1json/example/expires_at",
    )
    .unwrap() = serde_json::json!("next year");
    let broken: Vec<String> = examples(&doc)
        .iter()
        .flat_map(|ex| problems(&doc, ex))
        .collect();
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(broken.iter().any(|p| p.contains("next year")), "{broken:?}");
}
