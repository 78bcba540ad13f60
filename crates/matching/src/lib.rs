//! Patient matching as an algorithm, with neither storage nor HTTP (the `exchange` service
//! runs it over the store): [`Demographics`] read from a Patient and normalised (names folded,
//! split and compared by nickname, spelling and sound; dates with day/month transposition and
//! one-digit typos; USPS street abbreviations; phone digits; identifiers by kind and system),
//! the [`blocking`] searches that bring candidates from indexes, and the Fellegi–Sunter
//! [`Model`] that scores a pair and grades it `certain`, `probable`, `possible` or
//! `certainly-not`, deterministic rules first.
//!
//! Written here rather than taken from a crate: no maintained Rust crate does record linkage
//! of people; the string measures (`strsim`) and phonetic codes (`rphonetic`) are crates.

pub mod blocking;
pub mod compare;
pub mod demographics;
pub mod model;
pub mod phonetic;
mod tables;
pub mod text;

pub use blocking::{Block, blocks};
pub use compare::{Field, Level};
pub use demographics::{Date, Demographics, IdentifierKind};
pub use model::{Comparison, FieldScore, Grade, Model, NameFrequencies, NoFrequencies, Probabilities, Thresholds};
pub use tables::are_nicknames;
