//! Copy letters (gjenpartsbrev): for one day (Europe/Oslo), one PDF per person
//! listing every disclosure the broker owes them a letter for — searches asked
//! directly by a financial institution, not through a credit bureau (the bureau
//! writes) and not with `usingOwnNotification` (the institution writes); consent
//! lookups owe none — plus an NDJSON manifest per run for the print provider.
//!
//! The database is the source of truth, the files are its rendering:
//! 1. a run records a batch, then its letters and the disclosures each covers
//!    (a disclosure's seq is the primary key of its link, so it can be in one
//!    letter only, and a rerun finds nothing left to letter);
//! 2. then it writes each PDF and last the manifest (each atomically), and marks
//!    the batch complete.
//!
//! A run that dies after step 1 leaves an incomplete batch; the next run writes
//! its files and manifest again from the database before anything else. So every
//! owed disclosure ends up in exactly one letter, and every letter in exactly one
//! manifest.

pub mod content;
pub mod manifest;
pub mod pdf;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::nin::NationalId;
use crate::population::{PopulationError, PopulationRegister};
use crate::store::{LetterBatch, LetterRow, Store, StoreError, StoredDisclosure};
use content::Names;
use manifest::ManifestLine;

/// Persons whose records are read and lettered together.
const PERSONS_PER_CHUNK: usize = 500;
/// Letters whose records are read together when writing files.
const LETTERS_PER_CHUNK: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LettersError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Population(#[from] PopulationError),
    #[error("cannot write letters: {0}")]
    Io(String),
    #[error("cannot make a letter's PDF: {0}")]
    Pdf(String),
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadDate(String),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LettersReport {
    pub day: String,
    /// New letters for the day.
    pub letters: usize,
    /// Disclosure records those letters cover.
    pub disclosures: usize,
    /// The new batch's manifest, when there were new letters.
    pub manifest: Option<String>,
    /// Earlier batches left incomplete (a crash) whose files were written now.
    pub resumed_batches: usize,
    /// Persons the population register had no address for: their disclosures
    /// stay owed and are tried again by the next run for this day.
    pub held_back_persons: usize,
    pub held_back_disclosures: usize,
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Result<Date, LettersError> {
    s.parse::<Date>()
        .map_err(|_| LettersError::BadDate(format!("--date must be YYYY-MM-DD, not {s:?}")))
}

/// Yesterday in Oslo: the default day of a run just after midnight.
pub fn yesterday_in_oslo() -> Date {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(content::oslo())
        .date();
    today.yesterday().unwrap_or(today)
}

/// The day's bounds as UTC RFC 3339 without the zone letter (`at >= from` and
/// `at < to` are then exact as string comparisons, whatever the fraction digits).
pub fn day_bounds(day: Date) -> Result<(String, String), LettersError> {
    let bound = |d: Date| -> Result<String, LettersError> {
        let start = d
            .to_datetime(Time::midnight())
            .to_zoned_datetime(content::oslo())
            .map_err(|e| LettersError::BadDate(format!("no such day in Oslo: {e}")))?;
        Ok(start
            .timestamp()
            .to_zoned_datetime(TimeZone::UTC)
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string())
    };
    let next = day
        .tomorrow()
        .map_err(|e| LettersError::BadDate(format!("no day after {day}: {e}")))?;
    Ok((bound(day)?, bound(next)?))
}

/// The letters job over one store and population register.
pub struct LettersJob {
    pub store: Arc<dyn Store>,
    pub register: Arc<dyn PopulationRegister>,
    pub names: Names,
    pub out_dir: PathBuf,
}

impl LettersJob {
    /// Completes any crashed batch, then letters `day`'s owed disclosures.
    pub async fn run(&self, day: Date) -> Result<LettersReport, LettersError> {
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|e| LettersError::Io(format!("{}: {e}", self.out_dir.display())))?;
        let mut report = LettersReport {
            day: day.to_string(),
            ..LettersReport::default()
        };
        for batch in self.store.incomplete_letter_batches().await? {
            self.write_batch(&batch).await?;
            report.resumed_batches += 1;
        }

        let (from, to) = day_bounds(day)?;
        let persons = self.store.owed_persons(&from, &to).await?;
        if persons.is_empty() {
            return Ok(report);
        }
        let now = crate::time::now_rfc3339();
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let batch = LetterBatch {
            manifest: format!("manifest-{day}-{batch_id}.ndjson"),
            batch_id,
            day: day.to_string(),
            created_at: now.clone(),
        };
        self.store.add_letter_batch(&batch).await?;
        for chunk in persons.chunks(PERSONS_PER_CHUNK) {
            let records = self.store.owed_disclosures(chunk, &from, &to).await?;
            let mut by_person: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
            for d in &records {
                by_person.entry(d.record.nin).or_default().push(d.seq);
            }
            let mut rows = Vec::with_capacity(by_person.len());
            for (nin, seqs) in by_person {
                if self.register.resident(person(nin)?).await?.is_none() {
                    report.held_back_persons += 1;
                    report.held_back_disclosures += seqs.len();
                    continue;
                }
                let letter_id = uuid::Uuid::new_v4().simple().to_string();
                report.letters += 1;
                report.disclosures += seqs.len();
                rows.push(LetterRow {
                    file: format!("gjenpart-{day}-{letter_id}.pdf"),
                    letter_id,
                    nin,
                    day: day.to_string(),
                    created_at: now.clone(),
                    seqs,
                });
            }
            self.store.add_letters(&batch.batch_id, &rows).await?;
        }
        self.write_batch(&batch).await?;
        if report.letters > 0 {
            report.manifest = Some(batch.manifest);
        }
        Ok(report)
    }

    /// Writes every PDF of a recorded batch, then its manifest, then marks it
    /// complete. Safe to repeat: the same letters from the same records.
    async fn write_batch(&self, batch: &LetterBatch) -> Result<(), LettersError> {
        let letters = self.store.letters_of_batch(&batch.batch_id).await?;
        let mut lines = Vec::with_capacity(letters.len());
        for chunk in letters.chunks(LETTERS_PER_CHUNK) {
            let seqs: Vec<i64> = chunk.iter().flat_map(|l| l.seqs.iter().copied()).collect();
            let records: HashMap<i64, StoredDisclosure> = self
                .store
                .disclosures_by_seq(&seqs)
                .await?
                .into_iter()
                .map(|d| (d.seq, d))
                .collect();
            for letter in chunk {
                lines.push(self.write_letter(letter, &records).await?);
            }
        }
        if !lines.is_empty() {
            manifest::write_atomically(&self.out_dir, &batch.manifest, &manifest::encode(&lines)?)?;
            // The renames above are durable once the directory is.
            if let Ok(dir) = std::fs::File::open(&self.out_dir) {
                let _ = dir.sync_all();
            }
        }
        self.store
            .complete_letter_batch(&batch.batch_id, &crate::time::now_rfc3339())
            .await?;
        Ok(())
    }

    async fn write_letter(
        &self,
        letter: &LetterRow,
        records: &HashMap<i64, StoredDisclosure>,
    ) -> Result<ManifestLine, LettersError> {
        let covered: Vec<StoredDisclosure> = letter
            .seqs
            .iter()
            .map(|s| {
                records.get(s).cloned().ok_or_else(|| {
                    LettersError::Corrupt(format!(
                        "letter {} covers record {s}, which is gone",
                        letter.letter_id
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let resident = self
            .register
            .resident(person(letter.nin)?)
            .await?
            .ok_or_else(|| {
                LettersError::Population(PopulationError::Unavailable(format!(
                    "letter {} has lost its recipient's address",
                    letter.letter_id
                )))
            })?;
        let day = parse_day(&letter.day)?;
        let text = content::letter(
            &letter.letter_id,
            resident.clone(),
            day,
            &letter.created_at,
            &covered,
            &self.names,
        )?;
        let (bytes, pages) = pdf::render(&text)?;
        manifest::write_atomically(&self.out_dir, &letter.file, &bytes)?;
        Ok(ManifestLine {
            letter_id: letter.letter_id.clone(),
            file: letter.file.clone(),
            day: letter.day.clone(),
            created_at: letter.created_at.clone(),
            recipient: resident,
            disclosures: covered.len(),
            pages,
        })
    }
}

fn person(nin: u64) -> Result<NationalId, LettersError> {
    NationalId::from_stored(nin)
        .ok_or_else(|| LettersError::Corrupt("a stored id is out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_days_in_utc() {
        // Winter: UTC+1.
        assert_eq!(
            day_bounds(jiff::civil::date(2026, 3, 1)).unwrap(),
            ("2026-02-28T23:00:00".into(), "2026-03-01T23:00:00".into())
        );
        // The spring-forward day is 23 hours long.
        assert_eq!(
            day_bounds(jiff::civil::date(2026, 3, 29)).unwrap(),
            ("2026-03-28T23:00:00".into(), "2026-03-29T22:00:00".into())
        );
        assert!(parse_day("2026-02-30").is_err());
        assert!(parse_day("01.03.2026").is_err());
    }
}
