//! Lender-facing types shared by the Gjeldsbro broker and its adapters.
//!
//! No adapter depends on the broker: they depend on this crate alone, which holds
//! the national id type, the API-DEBT-FI loan model and envelopes, and the
//! [`LenderAdapter`] trait.

pub mod adapter;
pub mod loan;
pub mod nin;
pub mod wire;

pub use adapter::{AdapterError, CustomerQuery, LenderAdapter};
pub use loan::{ChargePeriod, Loan, LoanRule, LoanType};
pub use nin::{IdKind, IdPolicy, NationalId, NinError};
pub use wire::{CustomerLoans, DatasetPage, provider_id, scrub};
