//! The security regression suite (issue 12): one test binary, a module per edge.
//! Each test here failed on the main before its fix; each asserts the safe
//! behaviour, never a time (timings are printed for the reader).
//!
//! - `edges`: connection and request limits on both listeners, authentication
//!   before any body is read or any overload slot is taken, the operations
//!   listener (`/metrics` absent on the public port).
//! - `embed`: the embed token works only on the embedded page; sessions and
//!   CSRF tokens the broker issues; every consent of the partner listed and
//!   withdrawable; quotas for persons.
//! - `upstream`: no dev key outside dev mode, token lifetimes, lender redirects
//!   never followed, lender timestamps validated and normalised, `traceparent`
//!   forwarded only when valid.

mod edges;
mod embed;
mod upstream;
