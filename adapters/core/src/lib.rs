//! Lender-facing types shared by the Gjeldsbro broker and its adapters.
//!
//! No adapter depends on the broker: they depend on this crate alone, which holds
//! the lenders' envelopes and, re-exported from `gjeldsbro-domain`, the national
//! id type, the canonical loan model (API-DEBT-FI's, plus the other sources'
//! types) and the kinds of debt, and the [`LenderAdapter`]
//! trait with the [`LenderSetup`] its constructors are given.

pub mod adapter;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod tls_files;
// The domain's types, under the paths adapters have always used.
pub use gjeldsbro_domain::{kind, loan, nin, timestamp, wire};

pub use adapter::{AdapterError, CustomerQuery, LenderAdapter, LenderSetup, SetupError};
pub use kind::{DebtKind, KindSet};
pub use loan::{CaseStatus, ChargePeriod, Loan, LoanRule, LoanType};
pub use nin::{IdKind, IdPolicy, NationalId, NinError};
pub use wire::{CustomerLoans, DatasetPage, provider_id, scrub};
