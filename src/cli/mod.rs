//! The subcommands' work, callable from the binary and from tests. `main.rs` only
//! parses arguments and calls these.

pub mod audit;
pub mod demo;
mod demo_sources;
pub mod lender_check;
pub mod letters;

use std::path::Path;
use std::sync::Arc;

use crate::auth::devtoken::{self, DevClaims};
use crate::config::{Config, ConfigError, is_org_no};
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
    LenderCheck(#[from] crate::lendercheck::LenderCheckError),
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

/// Arguments of `gjeldsbro dev-token`.
#[derive(Debug, Clone)]
pub struct DevTokenArgs {
    pub issuer: String,
    pub audience: String,
    pub org: Option<String>,
    pub scopes: Vec<String>,
    pub pid: Option<String>,
    pub ttl_secs: u64,
}

/// Whether `gjeldsbro dev-token` may mint for `config`: only for a config that
/// says it is a dev one (`dev_mode = true`; a production broker refuses the dev
/// key anyway, and the command must not hint otherwise), and only a token that
/// config's broker would accept (`[auth] max_token_lifetime_secs`).
pub fn dev_token_allowed(config: &Config, ttl_secs: u64) -> Result<(), CliError> {
    if !config.dev_mode {
        return Err(CliError::Message(
            "dev-token mints only for configs with dev_mode = true (dev, demo and tests)".into(),
        ));
    }
    let max = config.auth.max_token_lifetime_secs;
    if max > 0 && ttl_secs > max {
        return Err(CliError::Message(format!(
            "--ttl-secs {ttl_secs} is longer than the config's [auth] max_token_lifetime_secs = {max}"
        )));
    }
    if ttl_secs == 0 {
        return Err(CliError::Message("--ttl-secs must be > 0".into()));
    }
    Ok(())
}

/// Mints an embed token for `pid` (what a partner posts into the embedded
/// page's iframe): the config's embed audience, the `gjeldsbro:embed` scope,
/// and a lifetime capped at `[embed] token_max_lifetime_secs`. It opens one
/// session of the page and works nowhere else.
pub fn dev_embed_token(
    key_pem: &[u8],
    config: &Config,
    pid: &str,
    ttl_secs: u64,
) -> Result<String, CliError> {
    dev_token(
        key_pem,
        DevTokenArgs {
            issuer: config.auth.issuer.clone(),
            audience: config.embed.audience(&config.auth),
            org: None,
            scopes: vec![crate::auth::embed::EMBED_SCOPE.to_owned()],
            pid: Some(pid.to_owned()),
            ttl_secs: ttl_secs.min(config.embed.token_max_lifetime_secs()),
        },
    )
}

/// Mints a token signed with the dev key (trusted only by dev and demo configs).
pub fn dev_token(key_pem: &[u8], args: DevTokenArgs) -> Result<String, CliError> {
    if let Some(org) = &args.org
        && !is_org_no(org)
    {
        return Err(CliError::Message(
            "--org must be a 9-digit organisation number".into(),
        ));
    }
    if args.org.is_none() && args.pid.is_none() {
        return Err(CliError::Message(
            "give --org (an organisation token) or --pid (a person token)".into(),
        ));
    }
    let scopes = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    devtoken::mint(
        key_pem,
        devtoken::DEV_KID,
        &args.issuer,
        &args.audience,
        DevClaims {
            org_no: args.org,
            scopes,
            pid: args.pid,
            ttl_secs: args.ttl_secs,
        },
    )
    .map_err(|e| CliError::Message(format!("cannot mint the token: {e}")))
}
