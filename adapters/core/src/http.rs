//! What every HTTP adapter does with reqwest in the same way (feature `http`):
//! building a client that follows no redirects, turning a transport error into
//! an [`AdapterError`] whose text names neither the host nor the person, and
//! reading an answer body no larger than a cap.

use crate::{AdapterError, scrub};

/// The start of every client that talks to a lender (calls, pulls, token
/// endpoints, checks): reqwest's builder with redirects turned off. reqwest
/// follows up to ten by default, re-sending the request's headers, and a lender
/// call carries the person's national id in one: a lender answering `302`/`307`
/// to another address would have the broker send it there. With this policy a
/// `3xx` comes back as the answer, which every caller treats as a bad status:
/// the lender's failure.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// A transport failure as an adapter error. The text starts with `what` (the
/// endpoint, e.g. "lender" or "token endpoint") instead of the URL, which names
/// the host, and is scrubbed of anything shaped like a national id.
pub fn classify(e: reqwest::Error, what: &str) -> AdapterError {
    let text = || {
        let mut t = e.to_string();
        if let Some(url) = e.url() {
            t = t.replace(url.as_str(), "<url>");
        }
        let mut t = format!("{what}: {t}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            t.push_str(": ");
            t.push_str(&s.to_string());
            source = s.source();
        }
        scrub(&t)
    };
    if e.is_timeout() {
        AdapterError::Timeout
    } else if e.is_connect() {
        AdapterError::Connect(text())
    } else if e.is_decode() || e.is_body() {
        AdapterError::Malformed(text())
    } else {
        AdapterError::Transport(text())
    }
}

/// Reads the whole body, refusing one over `max` bytes before it is buffered:
/// by its `Content-Length` when it has one, else as soon as the chunks pass it.
pub async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, AdapterError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(AdapterError::TooLarge);
    }
    let mut body = Vec::with_capacity(1024);
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, what))? {
        if body.len() + chunk.len() > max {
            return Err(AdapterError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
