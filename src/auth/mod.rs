//! Placeholder, replaced by the auth work.
