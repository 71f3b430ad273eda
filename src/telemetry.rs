//! Logging: structured JSON lines (tracing). National ids never reach a log line:
//! they travel as `NationalId`, whose Debug/Display print no digits, and log lines
//! name a person only by the keyed hash (`NinHasher`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. The filter comes from `GJELDSBRO_LOG` (or
/// `RUST_LOG`), defaulting to `default_filter`. Logs go to standard error.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("GJELDSBRO_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
