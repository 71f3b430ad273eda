//! The embedded page's HTTP headers: its session cookie and its
//! Content-Security-Policy. The session itself (ids, their tags, CSRF) is the
//! core's (`embed`); how it travels is the edge's.

use crate::embed::COOKIE;

/// `Set-Cookie` for a new session. `SameSite=None` because the page lives in a
/// third-party iframe; `Partitioned` (CHIPS) keeps the cookie to the partner's
/// top-level site, which is also what browsers that block third-party cookies
/// still allow. Always `Secure` (browsers take it on `http://localhost` too).
pub fn session_cookie(value: &str, max_age_secs: u64) -> String {
    format!(
        "{COOKIE}={value}; Path=/embed/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=None; Partitioned"
    )
}

/// The session id from the `Cookie` header, if any.
pub fn session_id_from_cookies(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A fresh nonce for the page's one inline `<style>`.
pub fn nonce() -> String {
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    hex::encode(n)
}

/// The page's Content-Security-Policy: nothing loads but the nonce'd style, no
/// script at all, forms post only to the broker, and only `origins` may frame it.
pub fn content_security_policy(origins: &[String], nonce: &str) -> String {
    let ancestors = if origins.is_empty() {
        "'none'".to_owned()
    } else {
        origins.join(" ")
    };
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'none'; script-src 'none'; \
         form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_policy() {
        let set = session_cookie("abc", 3600);
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Partitioned",
            "Path=/embed/",
            "Max-Age=3600",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert_eq!(
            session_id_from_cookies("x=1; gjeldsbro_embed=abc; y=2"),
            Some("abc")
        );
        assert_eq!(session_id_from_cookies("x=1"), None);
        let csp = content_security_policy(&["https://bank.example".into()], "n1");
        assert!(
            csp.contains("frame-ancestors https://bank.example"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'none'"));
        assert!(content_security_policy(&[], "n").contains("frame-ancestors 'none'"));
    }
}
