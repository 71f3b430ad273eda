//! `gjeldsbro audit verify` and `gjeldsbro purge`: the disclosure log's verifier
//! and the retention job, over the configured store.

use std::path::Path;

use time::OffsetDateTime;

use super::CliError;
use crate::audit::retention::{self, PurgeReport};
use crate::audit::verify::{self, Anchor, Verdict, VerifyOptions};
use crate::config::Config;
use crate::store;

/// `gjeldsbro audit verify --config C [--anchor SEQ:HASH]`: walks the whole
/// chain. `Ok(Verdict::Broken)` names the first bad record; `Err` means the store
/// could not be read.
pub async fn audit_verify(config_path: &Path, anchor: Option<Anchor>) -> Result<Verdict, CliError> {
    let config = Config::load(config_path)?;
    let store = store::open(&config.store.url).await?;
    let cutoff = OffsetDateTime::now_utc()
        - time::Duration::days(i64::from(config.retention.disclosure_days));
    let options = VerifyOptions {
        anchor,
        retention_cutoff: Some(crate::time::format_rfc3339(cutoff)),
    };
    Ok(verify::verify(&*store, &options).await?)
}

/// `gjeldsbro purge --config C [--dry-run]`: the retention job.
pub async fn purge(config_path: &Path, dry_run: bool) -> Result<PurgeReport, CliError> {
    let config = Config::load(config_path)?;
    let store = store::open(&config.store.url).await?;
    Ok(retention::purge(
        &*store,
        OffsetDateTime::now_utc(),
        config.retention.disclosure_days,
        dry_run,
    )
    .await?)
}
