//! The person → lenders index: the table itself is the `gjeldsbro-index`
//! crate (pure, no I/O); building it from the store and following the change
//! feed is here, where the store and the lenders are.

pub mod rebuild;

pub use gjeldsbro_index::*;
