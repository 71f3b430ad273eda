//! The command line's settings turned into a check: runs it and writes the
//! JSON report. Printing and the exit code are `main.rs`'s.

use std::path::PathBuf;
use std::time::Duration;

use crate::{CheckSettings, LenderCheckError, Report};
use gjeldsbro_adapter::tls_files::LenderTlsFiles;
use gjeldsbro_domain::nin::IdPolicy;

/// Arguments of `lender-check`.
#[derive(Debug, Clone)]
pub struct LenderCheckArgs {
    pub base_url: String,
    pub org_no: String,
    pub customers: Vec<String>,
    pub accept_synthetic_ids: bool,
    pub report: PathBuf,
    pub latency_seconds: f64,
    pub rate: u32,
    pub timeout_ms: u64,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// Runs the check and writes the report; the report says whether it passed.
pub async fn lender_check(args: LenderCheckArgs) -> Result<Report, LenderCheckError> {
    if !(args.latency_seconds.is_finite() && args.latency_seconds > 0.0) {
        return Err(LenderCheckError::InvalidArgument(
            "--latency-seconds must be a positive number".into(),
        ));
    }
    let identity = match (args.client_cert, args.client_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(LenderCheckError::InvalidArgument(
                "--client-cert and --client-key go together".into(),
            ));
        }
    };
    let mut settings = CheckSettings::new(args.base_url, args.org_no);
    settings.customers = args.customers;
    settings.id_policy = if args.accept_synthetic_ids {
        IdPolicy::SYNTHETIC_OK
    } else {
        IdPolicy::STRICT
    };
    settings.tls = LenderTlsFiles {
        identity,
        ca: args.ca_file,
    };
    settings.latency_duration = Duration::from_secs_f64(args.latency_seconds.min(3600.0));
    settings.rate_per_second = args.rate;
    settings.call_timeout = Duration::from_millis(args.timeout_ms.max(1));
    let report = crate::run(&settings).await?;
    crate::write_report(&report, &args.report)?;
    Ok(report)
}
