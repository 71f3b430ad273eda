//! The subcommands' work, callable from the binary and from tests. `main.rs` only
//! parses arguments and calls these.

pub mod audit;
pub mod demo;
pub mod letters;

use std::path::Path;
use std::sync::Arc;

use crate::auth::devtoken::{self, DevTokenArgs};
use crate::config::{Config, ConfigError};
use crate::ingest::{IngestError, IngestReport, Ingestor};
use crate::lenders::{LenderSetupError, Lenders};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lenders(#[from] LenderSetupError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Letters(#[from] crate::letters::LettersError),
    #[error(transparent)]
    Retention(#[from] crate::audit::retention::RetentionError),
    #[error(transparent)]
    DevToken(#[from] devtoken::DevTokenError),
    #[error("{0}")]
    Message(String),
}

/// `gjeldsbro ingest --config C --lender ID FILE`: loads a getalldata file as the
/// lender's new dataset. A running broker on the same store picks it up within a
/// second.
pub async fn ingest(
    config_path: &Path,
    lender_id: &str,
    file: &Path,
) -> Result<IngestReport, CliError> {
    let config = Config::load(config_path)?;
    let store = store::open(&config.store.url).await?;
    let lenders = Arc::new(Lenders::from_config(&config)?);
    let ingestor = Ingestor::new(store, lenders, None, config.id_policy());
    let reader = std::fs::File::open(file)
        .map_err(|e| CliError::Message(format!("cannot open {}: {e}", file.display())))?;
    let source = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    Ok(ingestor
        .load_dataset(lender_id, reader, "file", &source, false)
        .await?)
}

/// `gjeldsbro pull --config C --lender ID`: pulls the lender's daily dataset now
/// (all pages), with retries. A running broker on the same store picks it up.
pub async fn pull(config_path: &Path, lender_id: &str) -> Result<IngestReport, CliError> {
    let config = Config::load(config_path)?;
    let lender = config
        .lender(lender_id)
        .cloned()
        .ok_or_else(|| CliError::Message(format!("no lender {lender_id:?} in the config")))?;
    let store = store::open(&config.store.url).await?;
    let lenders = Arc::new(Lenders::from_config(&config)?);
    let ingestor = Ingestor::new(store, lenders, None, config.id_policy());
    let client = gjeldsbro_adapter::http::client_builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("gjeldsbro/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::Message(format!("cannot build the HTTP client: {e}")))?;
    let settings = crate::ingest::pull::PullSettings::default();
    Ok(ingestor
        .pull(
            &client,
            lender_id,
            &lender.base_url,
            &lender.org_no,
            &settings,
        )
        .await?)
}

/// Mints a token signed with the dev key; see [`devtoken::for_args`].
pub fn dev_token(key_pem: &[u8], args: DevTokenArgs) -> Result<String, CliError> {
    Ok(devtoken::for_args(key_pem, args)?)
}

/// Whether `gjeldsbro dev-token` may mint for `config`; see [`devtoken::allowed`].
pub fn dev_token_allowed(config: &Config, ttl_secs: u64) -> Result<(), CliError> {
    Ok(devtoken::allowed(config, ttl_secs)?)
}
