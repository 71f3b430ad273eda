//! The daily pull: `GET {base_url}/debt-information/v1/loans/{org}?page=N` from
//! page 0 upwards until a page holds fewer customers than the first. Pages may be
//! tens of megabytes each and gigabytes in all: each is parsed as a stream straight
//! off the socket, so memory stays flat whatever the size. A failed page aborts the
//! whole load (the old dataset stays in force); the pull is retried from page 0
//! with jittered exponential backoff.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::parse::{DatasetParser, RowSink};
use super::{IngestError, IngestReport, Ingestor, LoadFailure};

/// How a pull talks to a lender.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// No single page may take longer than this, headers to last byte.
    pub page_timeout: Duration,
    /// Whole-load attempts before giving up.
    pub attempts: usize,
    /// First backoff; doubles with jitter.
    pub backoff: Duration,
    /// Guards against a lender that never sends a short page.
    pub max_pages: u64,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            page_timeout: Duration::from_secs(600),
            attempts: 3,
            backoff: Duration::from_secs(5),
            max_pages: 100_000,
        }
    }
}

/// The URL of one page of a lender's daily dataset.
pub fn page_url(base_url: &str, org_no: &str, page: u64) -> String {
    format!(
        "{}/debt-information/v1/loans/{org_no}?page={page}",
        base_url.trim_end_matches('/')
    )
}

impl Ingestor {
    /// Pulls a lender's daily dataset now, with retries.
    pub async fn pull(
        &self,
        client: &reqwest::Client,
        lender_id: &str,
        base_url: &str,
        org_no: &str,
        settings: &PullSettings,
    ) -> Result<IngestReport, IngestError> {
        let attempt = || async {
            let client = client.clone();
            let (base, org, s) = (base_url.to_owned(), org_no.to_owned(), settings.clone());
            let handle = tokio::runtime::Handle::current();
            self.load_with(lender_id, "pull", "pull", true, move |parser, sink| {
                pull_pages(&handle, &client, &base, &org, &s, parser, sink)
            })
            .await
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(settings.backoff)
                    .with_max_times(settings.attempts.saturating_sub(1))
                    .with_jitter(),
            )
            // Only transport trouble is worth another try; a rejected dataset will
            // be rejected again.
            .when(|e| matches!(e, IngestError::Fetch(_)))
            .notify(|e, after| tracing::warn!(lender = lender_id, error = %e, retry_in_ms = after.as_millis() as u64, "pull failed; retrying"))
            .await
    }
}

/// Runs on a blocking thread: fetches pages one after another, parsing each as it
/// streams in.
fn pull_pages(
    handle: &tokio::runtime::Handle,
    client: &reqwest::Client,
    base_url: &str,
    org_no: &str,
    settings: &PullSettings,
    parser: &mut DatasetParser,
    sink: &mut dyn RowSink,
) -> Result<(), LoadFailure> {
    let mut first_page_size = None;
    for page in 0..settings.max_pages {
        let url = page_url(base_url, org_no, page);
        let response = handle
            .block_on(client.get(&url).timeout(settings.page_timeout).send())
            .map_err(|e| LoadFailure::Fetch(format!("page {page}: {}", describe(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(LoadFailure::Fetch(format!(
                "page {page}: HTTP {}",
                status.as_u16()
            )));
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(body), handle.clone());
        let customers = parser.parse_document(reader, sink)?;
        let first = *first_page_size.get_or_insert(customers);
        if customers < first || first == 0 {
            return Ok(());
        }
    }
    Err(LoadFailure::Fetch(format!(
        "no short page within {} pages",
        settings.max_pages
    )))
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_urls() {
        assert_eq!(
            super::page_url("http://x:1/", "920000001", 3),
            "http://x:1/debt-information/v1/loans/920000001?page=3"
        );
    }
}
