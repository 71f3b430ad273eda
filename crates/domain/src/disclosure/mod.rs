//! The disclosure record and the bytes its hash chain covers.

pub mod encoding;
pub mod record;

pub use encoding::ChainVersion;
pub use record::{DisclosureRecord, GENESIS, chain_hash};
