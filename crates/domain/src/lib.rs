//! Gjeldsbro's domain: the types every other crate speaks, with no I/O.
//!
//! National ids (validated, never printed) and their keyed log hash; the
//! canonical loan model and the kinds of debt; lender timestamps; the answer
//! model partners receive; the disclosure record and its versioned chain
//! encoding; the broker's clock formats. Adapters, the store, the broker core
//! and the HTTP layer all sit above this crate; it sits above nothing.

pub mod delivery;
pub mod disclosure;
pub mod kind;
pub mod loan;
pub mod model;
pub mod nin;
pub mod org;
pub mod purpose;
pub mod time;
pub mod timestamp;
pub mod wire;

pub use kind::{DebtKind, KindSet};
pub use loan::{CaseStatus, ChargePeriod, Loan, LoanRule, LoanType};
pub use nin::{IdKind, IdPolicy, NationalId, NinError};
pub use wire::{CustomerLoans, DatasetPage, provider_id, scrub};
