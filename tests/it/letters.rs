//! `gjeldsbro letters`: a day of searches through the real broker (and two
//! records straddling an Oslo midnight appended through the store) becomes one
//! PDF per person the broker owes a letter, read back with `pdftotext`; bureau
//! and usingOwnNotification searches get none; reruns add nothing; every owed
//! disclosure is in exactly one letter and every letter in one manifest line.
//!
//! Needs `pdftotext` (poppler-utils, which .ci/run installs): the test fails,
//! rather than skips, without it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BUREAU, FI, Fixture, Options, fi_token, token};
use gjeldsbro::audit::record::DisclosureRecord;
use gjeldsbro::letters::content::norwegian_date;
use gjeldsbro::nin::{IdPolicy, NationalId};
use gjeldsbro::population::SyntheticRegister;
use gjeldsbro::store::StoredDisclosure;
use gjeldsbro::store::prelude::*;
use gjeldsbro::store::sqlite::SqliteStore;
use serde_json::{Value, json};

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!("pdftotext is needed (apt-get install poppler-utils; .ci/run installs it): {e}")
        });
    assert!(
        out.status.success(),
        "pdftotext failed on {}",
        pdf.display()
    );
    normalise(&String::from_utf8(out.stdout).expect("UTF-8 text"))
}

/// Collapses every run of whitespace (line breaks, no-break spaces) to one space.
fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn name_of(ssn: &str) -> String {
    let id = NationalId::parse(ssn, IdPolicy::SYNTHETIC_OK).expect("id");
    SyntheticRegister::resident_for(id).name
}

fn oslo_day(at: &str) -> jiff::civil::Date {
    let ts: jiff::Timestamp = at.parse().expect("RFC 3339");
    ts.to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Oslo").expect("tz"))
        .date()
}

fn run_letters(config: &Path, day: &str, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["letters", "--config"])
        .arg(config)
        .args(["--date", day, "--out"])
        .arg(out)
        .output()
        .expect("run gjeldsbro letters");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "letters failed: {text}");
    text
}

/// The PDFs in `dir` by file name, with their text.
fn pdfs(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("out dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".pdf").then_some(name)
        })
        .map(|name| {
            let text = pdftotext(&dir.join(&name));
            (name, text)
        })
        .collect()
}

/// Every manifest line in `dir`, and the raw manifest text.
fn manifests(dir: &Path) -> (Vec<Value>, String) {
    let mut lines = Vec::new();
    let mut raw = String::new();
    for e in std::fs::read_dir(dir).expect("out dir") {
        let path: PathBuf = e.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("manifest-") && name.ends_with(".ndjson") {
            let text = std::fs::read_to_string(&path).expect("manifest");
            for line in text.lines() {
                lines.push(serde_json::from_str(line).expect("a JSON line"));
            }
            raw.push_str(&text);
        }
    }
    (lines, raw)
}

async fn stored(store: &SqliteStore) -> Vec<StoredDisclosure> {
    store.disclosures_after(0, 10_000).await.expect("records")
}

fn loan_titles(d: &StoredDisclosure) -> BTreeSet<&'static str> {
    let v: Value = serde_json::from_str(&d.record.disclosed).expect("disclosed JSON");
    v["loans"]
        .as_array()
        .expect("loans")
        .iter()
        .map(|l| match l["loan"]["type"].as_str() {
            Some("repaymentLoan") => "Nedbetalingslån",
            Some("creditFacility") => "Rammekreditt",
            Some("chargeCard") => "Faktureringskort",
            other => panic!("loan type {other:?}"),
        })
        .collect()
}

fn owed(d: &StoredDisclosure) -> bool {
    d.record.purpose == "search" && d.record.letter_owed_by == "broker"
}

/// Checks that every owed record is in exactly one PDF (its person's, naming its
/// referenceID, time, loan types and message) and that no other record is.
fn check_letters(records: &[StoredDisclosure], texts: &BTreeMap<String, String>) {
    for d in records {
        let name = name_of(&format!("{:011}", d.record.nin));
        let reference = format!("Mottakerens referanse: {}", d.record.reference_id);
        let holding: Vec<&String> = texts
            .iter()
            .filter(|(_, t)| t.contains(&name) && t.contains(&reference))
            .map(|(f, _)| f)
            .collect();
        if !owed(d) {
            assert!(
                texts.values().all(|t| !t.contains(&reference)),
                "record {} ({}) owes no letter from the broker but is in one",
                d.seq,
                d.record.letter_owed_by
            );
            continue;
        }
        assert_eq!(holding.len(), 1, "record {} in {holding:?}", d.seq);
        let text = &texts[holding[0]];
        let day = norwegian_date(oslo_day(&d.record.at));
        assert!(
            text.contains(&format!("Gjenpart av gjeldsopplysninger utlevert {day}")),
            "{text}"
        );
        assert!(text.contains(&format!("Tidspunkt: {day} kl.")), "{text}");
        assert!(
            text.contains("Itest Bank ASA (org.nr. 910000001)"),
            "{text}"
        );
        for title in loan_titles(d) {
            assert!(text.contains(title), "{title} missing: {text}");
        }
        if loan_titles(d).is_empty() {
            assert!(text.contains("ikke har registrert usikret gjeld"), "{text}");
        }
        if let Some(m) = &d.record.message {
            assert!(text.contains(&normalise(m)), "message missing: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_searches_becomes_one_letter_per_person() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let with = fx.persons_with_lenders(2);
    let without = fx.persons_without_debt();
    let config = fx.dir.path().join("letters.toml");
    std::fs::write(
        &config,
        fx.config_text("127.0.0.1:0", true) + "\n[population_register]\nkind = \"synthetic\"\n",
    )
    .expect("config");
    let out = fx.dir.path().join("brev");

    let message = "Søknad om forbrukslån – Ærlig Øystein på Åsen";
    let searches = [
        // A: twice the same day, one letter listing both.
        json!({"ssn": with[0], "referenceID": "ref-a1", "messageToCustomer": message}),
        json!({"ssn": with[0], "referenceID": "ref-a2"}),
        // B with co-borrower C: a letter to each.
        json!({"ssn": with[1], "referenceID": "ref-bc", "coBorrowers": [{"ssn": with[2]}]}),
        // E: the institution notifies the person itself.
        json!({"ssn": with[4], "referenceID": "ref-e", "usingOwnNotification": true}),
        // F: no debt; that is a disclosure too.
        json!({"ssn": without[0], "referenceID": "ref-f"}),
    ];
    for s in &searches {
        let status = b.search_as(&fi_token(), s).await.status;
        assert!(status == 200 || status == 204, "{status}");
    }
    // D: through a credit bureau, which writes its own letter.
    let r = b
        .search_as(
            &token(BUREAU, &["debt.search"]),
            &json!({"ssn": with[3], "referenceID": "ref-d", "onBehalfOfOrganization": FI}),
        )
        .await;
    assert_eq!(r.status, 200);

    // G and H straddle an Oslo midnight: 23:30 on 1 March and 00:30 on 2 March.
    let store = SqliteStore::open(&fx.db_path).await.expect("store");
    let g = common::fresh_synthetic_id(&fx.pop, "158391");
    let h = common::fresh_synthetic_id(&fx.pop, "168391");
    let disclosed = json!({"loans": [{"lender": fx.specs[0].id, "loan": {
        "type": "chargeCard", "timestamp": "2026-03-01T06:00:00Z", "coBorrower": 0,
        "interestBearingBalance": 1_250_000, "nonInterestBearingBalance": 9_900}}], "missing": 1});
    let direct = |nin: &str, at: &str, reference: &str| DisclosureRecord {
        query_id: format!("q-{reference}"),
        at: at.to_owned(),
        recipient_org: FI.to_owned(),
        on_behalf_of: None,
        purpose: "search".into(),
        reference_id: reference.to_owned(),
        nin: nin.parse().expect("digits"),
        disclosed: disclosed.to_string(),
        letter_owed_by: "broker".into(),
        message: Some("Kredittkort".into()),
    };
    store
        .append_disclosures(&[
            direct(&g, "2026-03-01T22:30:00.5Z", "ref-g"),
            direct(&h, "2026-03-01T23:30:00Z", "ref-h"),
        ])
        .await
        .expect("append");

    let records = stored(&store).await;
    let days: BTreeSet<String> = records
        .iter()
        .map(|d| oslo_day(&d.record.at).to_string())
        .collect();
    assert!(days.contains("2026-03-01") && days.contains("2026-03-02"));
    for day in &days {
        run_letters(&config, day, &out);
    }

    let texts = pdfs(&out);
    check_letters(&records, &texts);
    let owed_persons: BTreeSet<(u64, String)> = records
        .iter()
        .filter(|d| owed(d))
        .map(|d| (d.record.nin, oslo_day(&d.record.at).to_string()))
        .collect();
    assert_eq!(
        texts.len(),
        owed_persons.len(),
        "one letter per person and day"
    );
    // A's letter lists both of A's searches; G and H are on their own days.
    let a = name_of(&with[0]);
    let a_letter = texts.values().find(|t| t.contains(&a)).expect("A's letter");
    assert!(a_letter.contains("ref-a1") && a_letter.contains("ref-a2"));
    for (person, day) in [(&g, "1. mars 2026"), (&h, "2. mars 2026")] {
        let t = texts
            .values()
            .find(|t| t.contains(&name_of(person)))
            .expect("letter");
        assert!(t.contains(&format!("utlevert {day}")), "{t}");
        assert!(t.contains(common::Fixture::lender_name(0)), "{t}");
        assert!(t.contains("1 långiver(e) svarte ikke"), "{t}");
    }
    for absent in [&with[3], &with[4]] {
        let n = name_of(absent);
        assert!(texts.values().all(|t| !t.contains(&n)), "no letter for {n}");
    }

    // The manifest names every PDF once, with the address, and no national id.
    let (lines, raw) = manifests(&out);
    let files: BTreeSet<String> = lines
        .iter()
        .map(|l| l["file"].as_str().expect("file").to_owned())
        .collect();
    assert_eq!(files.len(), lines.len(), "a letter listed twice");
    assert_eq!(files, texts.keys().cloned().collect::<BTreeSet<_>>());
    for l in &lines {
        assert!(
            l["recipient"]["postcode"]
                .as_str()
                .is_some_and(|p| p.len() == 4)
        );
        let text = &texts[l["file"].as_str().expect("file")];
        assert!(text.contains(l["recipient"]["name"].as_str().expect("name")));
        assert!(text.contains(&format!(
            "Brevnummer: {}",
            l["letter_id"].as_str().expect("id")
        )));
    }
    for d in &records {
        let id = format!("{:011}", d.record.nin);
        assert!(!raw.contains(&id), "a national id in the manifest");
        assert!(files.iter().all(|f| !f.contains(&id)));
    }

    // Run again: nothing new.
    for day in &days {
        let said = run_letters(&config, day, &out);
        assert!(said.contains("no disclosures left to letter"), "{said}");
    }
    assert_eq!(pdfs(&out).len(), texts.len());
    assert_eq!(manifests(&out).0.len(), lines.len());

    // A new search the same day: one more letter, for that disclosure only.
    b.search_as(
        &fi_token(),
        &json!({"ssn": with[0], "referenceID": "ref-a3"}),
    )
    .await;
    let records = stored(&store).await;
    let newest = records.last().expect("a record");
    run_letters(&config, &oslo_day(&newest.record.at).to_string(), &out);
    let after = pdfs(&out);
    assert_eq!(after.len(), texts.len() + 1);
    let (lines, _) = manifests(&out);
    assert_eq!(lines.len(), after.len());
    let fresh: Vec<&String> = after
        .iter()
        .filter(|(f, _)| !texts.contains_key(*f))
        .map(|(_, t)| t)
        .collect();
    assert!(fresh[0].contains("ref-a3") && !fresh[0].contains("ref-a1"));
    check_letters(&records, &after);
}
