//! `gjeldsbro letters`: the day's copy letters and their manifest.

use std::path::Path;

use super::CliError;
use crate::config::Config;
use crate::letters::content::Names;
use crate::letters::{self, LettersJob, LettersReport};
use crate::{population, store};

/// `gjeldsbro letters --config C [--date YYYY-MM-DD] --out DIR`: letters the
/// day's owed disclosures (default: yesterday in Oslo) into DIR.
pub async fn letters(
    config_path: &Path,
    date: Option<&str>,
    out_dir: &Path,
) -> Result<LettersReport, CliError> {
    let config = Config::load(config_path)?;
    let day = match date {
        Some(d) => letters::parse_day(d)?,
        None => letters::yesterday_in_oslo(),
    };
    let register = population::from_config(config.population_register.as_ref())
        .map_err(letters::LettersError::from)?;
    let job = LettersJob {
        store: store::open(&config.store.url).await?,
        register,
        names: Names::from_config(&config),
        out_dir: out_dir.to_path_buf(),
    };
    Ok(job.run(day).await?)
}
