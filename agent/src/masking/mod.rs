//! Inline masking of result values: the pure, synchronous machinery (no
//! I/O, no async) that rewrites DataRow and COPY rows before they reach the
//! client.
//!
//! A result set is described by one [`ColumnPlan`] per column, made from
//! the decision and the RowDescription: pass the column through
//! ([`ColumnAction::Clear`]), hide it with a [`MaskMethod`]
//! ([`ColumnAction::Mask`]), or scan it for secrets
//! ([`ColumnAction::Detect`]). A [`RowMasker`] turns the plan into one
//! operation per column, once, and then rewrites every row by appending the
//! new message to the connection's write buffer: pass-through columns are
//! copied as byte slices, masked ones written in place, and nothing is
//! allocated per row. Any row it cannot read exactly is an error
//! ([`RewriteError`]) that ends the session, because the alternative is
//! relaying an unmasked row.
//!
//! **Why a mask on a non-text column becomes NULL.** The client decodes
//! each value by its column type, in text or binary format. `********` is
//! not an integer, a date or a uuid, and a "redacted" binary int4 has no
//! honest encoding; a value that does not parse breaks drivers, and a
//! plausible fake (`0`, `1970-01-01`) would be taken for data. NULL is the
//! only value valid for every type and it cannot be mistaken for the real
//! one, so masking anything but text (including json, arrays, bytea and
//! unknown OIDs) yields NULL. Text-like types keep the method's shape
//! (`***@example.com`, `************1111`, a keyed hash that still joins).
//!
//! **Why detectors run only where a value's origin is unknown.** When the
//! catalog says a column comes from a sensitive table column, the plan masks
//! it outright; when it says a column is not sensitive, scanning it would
//! only cost time and corrupt data that merely looks like a card number.
//! Detection ([`Detectors`]) is the safety net for what analysis cannot
//! trace (expressions, casts, functions, views it cannot see through),
//! where a secret may be embedded in free text or JSON. It is best effort
//! by nature, so it never replaces a policy mask.
//!
//! **What the plan must get right.** Types are judged by OID alone, so a
//! domain over text must be given as its base type (or it is treated as an
//! unknown type: masked to NULL, never scanned). Detection sees text, JSON
//! string contents and JSON numbers; it does not look inside arrays or
//! composite values, nor through JSON `\u` escapes that spell out a secret.
//! Binary COPY is not handled (the caller refuses it when anything is
//! masked), and COPY parsing assumes an ASCII-safe client encoding.
//!
//! Modules: [`method`](mod@method) holds the masking methods and the
//! keyed hash; [`detect`](mod@detect) the detectors; [`rewrite`](mod@rewrite)
//! the plans and the DataRow rewrite; [`copy`](mod@copy) the COPY text and
//! csv rewrite.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod catalog;
mod context;
pub mod copy;
pub mod detect;
pub mod method;
pub mod plan;
pub mod rewrite;

/// Fuzzing entry point (the `fuzz/` masking target and the property tests).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use context::{Masking, MaskingSetupError};
pub use copy::CopyText;
pub use detect::{DetectorError, Detectors};
pub use method::{HashKey, KeyError, MaskMethod, UnknownMethod};
pub use rewrite::{
    ColumnAction, ColumnPlan, Format, MaskStats, RewriteError, RowMasker, TRACKED_COLUMNS,
};
