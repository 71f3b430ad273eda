//! The handlers, one module per API: each authenticates through the layers in
//! front of it, validates, calls the core and translates its answer.

pub mod consent;
pub(crate) mod delivery;
pub(crate) mod embed;
pub(crate) mod me;
pub(crate) mod search;
