//! The disclosure record and the bytes its hash chain covers.

pub mod encoding;
mod owed;
pub mod record;

pub use encoding::ChainVersion;
pub use owed::LetterOwedBy;
pub use record::{DisclosureRecord, GENESIS, chain_hash};
