//! The demo's other debt sources: one student-loan lender (saldo API and
//! Maskinporten-style token endpoint) and one collection agency, simulated on
//! loopback, with their persons delivered through the ordinary ingest path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::Population;
use crate::collection_sim::{CollectionSim, CollectionSimConfig, case};
use crate::student_loan_sim::{Saldo, StudentLoanSim, StudentLoanSimConfig};
use serde_json::{Value, json};

use gjeldsbro_http::app::AppState;

use super::DemoError;

/// The dev-only Maskinporten client key pair (config/README.md).
const CLIENT_KEY: &str = include_str!("../../../config/dev-maskinporten-client-key.pem");
const CLIENT_PUB: &str = include_str!("../../../config/dev-maskinporten-client-pub.pem");
const KID: &str = "gjeldsbro-dev-mp-1";
const CLIENT_ID: &str = "gjeldsbro-demo";
const MP_AUDIENCE: &str = "https://maskinporten.example/";
const SCOPE: &str = "lanekassen:studielan/saldo";
const SALDO_KEY: &str = "demo-saldo-key";
const AGENCY_KEY: &str = "demo-agency-key";
pub const STUDENT_ORG: &str = "960885406";
pub const AGENCY_ORG: &str = "930000001";
/// Persons given a student loan (and every third of them a collection case).
const WITH_STUDENT_LOANS: usize = 60;

/// The running simulators.
pub struct Sources {
    pub students: StudentLoanSim,
    pub agency: CollectionSim,
    /// Persons with a student loan, and with collection cases.
    pub student_persons: Vec<String>,
    pub case_persons: Vec<String>,
}

/// Starts the simulators for `demo_person` and some others.
pub async fn start(population: &Population, demo_person: &str) -> Result<Sources, DemoError> {
    let mut student_persons: Vec<String> = vec![demo_person.to_owned()];
    student_persons.extend(
        population
            .persons_with_debt()
            .into_iter()
            .filter(|p| *p != demo_person)
            .take(WITH_STUDENT_LOANS - 1)
            .map(str::to_owned),
    );
    let case_persons: Vec<String> = student_persons.iter().step_by(3).cloned().collect();
    let saldos = student_persons
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let i = i as i64;
            (
                p.clone(),
                Saldo::from_ore(
                    15_000_000 + i * 731_113,
                    40_000 + i * 997,
                    if i % 4 == 0 { 7_000 } else { 0 },
                    0,
                ),
            )
        })
        .collect();
    let cases: HashMap<String, Vec<Value>> = case_persons
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let i = i as i64;
            (
                p.clone(),
                vec![
                    case(
                        &format!("K-2026-{i:04}"),
                        "active",
                        120_000 + i * 5_000,
                        3_400,
                        70_000,
                    ),
                    case(
                        &format!("K-2025-{i:04}"),
                        "paymentPlan",
                        48_000,
                        1_200,
                        35_000,
                    ),
                ],
            )
        })
        .collect();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let io =
        |e: std::io::Error| DemoError::Message(format!("cannot start a source simulator: {e}"));
    let students = StudentLoanSim::spawn(
        loopback,
        StudentLoanSimConfig {
            client_public_key_pem: CLIENT_PUB.as_bytes().to_vec(),
            kid: KID.into(),
            client_id: CLIENT_ID.into(),
            audience: MP_AUDIENCE.into(),
            scope: SCOPE.into(),
            api_key: SALDO_KEY.into(),
            token_lifetime: Duration::from_secs(120),
            saldos,
        },
    )
    .await
    .map_err(io)?;
    let agency = CollectionSim::spawn(
        loopback,
        CollectionSimConfig {
            org_no: AGENCY_ORG.into(),
            api_key: AGENCY_KEY.into(),
            cases,
        },
    )
    .await
    .map_err(io)?;
    Ok(Sources {
        students,
        agency,
        student_persons,
        case_persons,
    })
}

/// The two lenders' config sections; writes the dev client key beside the config.
pub fn config(data_dir: &Path, s: &Sources) -> Result<String, DemoError> {
    let key = data_dir.join("dev-maskinporten-client-key.pem");
    std::fs::write(&key, CLIENT_KEY)
        .map_err(|e| DemoError::Message(format!("cannot write the dev client key: {e}")))?;
    Ok(format!(
        "\n[[lenders]]\nid = \"lanekassen\"\norg_no = \"{STUDENT_ORG}\"\n\
         name = \"Statens lånekasse for utdanning\"\nadapter = \"student-loans\"\n\
         base_url = \"{saldo}\"\ntimeout_ms = 1000\n\
         [lenders.settings]\ntoken_url = \"{token}\"\ntoken_audience = \"{MP_AUDIENCE}\"\n\
         client_id = \"{CLIENT_ID}\"\nscope = \"{SCOPE}\"\nkey_file = \"{key}\"\nkid = \"{KID}\"\n\
         api_key = \"{SALDO_KEY}\"\n\
         \n[[lenders]]\nid = \"norkreditt\"\norg_no = \"{AGENCY_ORG}\"\nname = \"NorKreditt AS\"\n\
         adapter = \"debt-collection\"\nbase_url = \"{agency}\"\ntimeout_ms = 500\n\
         [lenders.settings]\napi_key = \"{AGENCY_KEY}\"\n",
        saldo = s.students.base_url(),
        token = s.students.token_url(),
        agency = s.agency.base_url(),
        key = key.display(),
    ))
}

/// Delivers the two sources' person lists (the index's only way in) as files
/// through the ordinary ingest path.
pub async fn ingest(state: &AppState, data_dir: &Path, s: &Sources) -> Result<(), DemoError> {
    let student_rows: Vec<Value> = s
        .student_persons
        .iter()
        .map(|p| {
            json!({"customerID": p, "financialInstitutionID": STUDENT_ORG, "loans": [
                {"type": "studentLoan", "accountID": "saldo", "principal": 15_000_000,
                 "interest": 0, "fees": 0, "costs": 0}]})
        })
        .collect();
    let case_rows: Vec<Value> = s
        .case_persons
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"customerID": p, "financialInstitutionID": AGENCY_ORG, "loans": [
                {"type": "collectionCase", "accountID": format!("K-2026-{i:04}"),
                 "principal": 120_000, "interest": 0, "fees": 0, "status": "active"}]})
        })
        .collect();
    for (lender, org, rows) in [
        ("lanekassen", STUDENT_ORG, student_rows),
        ("norkreditt", AGENCY_ORG, case_rows),
    ] {
        let path = data_dir.join("datasets").join(format!("{lender}.json"));
        let body = json!({"providerID": gjeldsbro_adapter::provider_id(org), "customers": rows});
        std::fs::write(&path, body.to_string())
            .map_err(|e| DemoError::Message(format!("cannot write a dataset: {e}")))?;
        let file = std::fs::File::open(&path)
            .map_err(|e| DemoError::Message(format!("cannot open a dataset: {e}")))?;
        let report = state
            .ingestor
            .load_dataset(lender, file, "file", &format!("{lender}.json"), false)
            .await?;
        println!(
            "  {lender} ({org}): {} persons indexed (live data from its own API)",
            report.customers
        );
    }
    Ok(())
}
