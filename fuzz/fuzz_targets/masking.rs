//! The DataRow and COPY masking rewriter, given arbitrary RowDescriptions,
//! CopyOutResponses and rows.
//!
//! Input: a flags byte (bit 0: the statement is a `SHOW`, so computed
//! columns go to the detectors instead of being redacted; bit 1: COPY in
//! csv; bit 2: COPY options from the next four bytes), four option bytes
//! (delimiter, quote, escape, one-byte NULL string), then a stream of
//! backend messages: each RowDescription (`T`) or CopyOutResponse (`H`)
//! plans the columns with `masking::plan`, each DataRow (`D`) and CopyData
//! (`d`) after it is masked.
//!
//! Invariants: a DataRow that matches the plan is always rewritten (never
//! an error, which would end the session); the result is one DataRow with
//! as many values; pass-through columns are unchanged; masked columns hold
//! exactly what their method gives (NULL for non-text types) and never the
//! original value; detector columns keep NULLs and their output holds no
//! secret the detectors would still find. A COPY row with nothing to mask
//! comes out unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::masking::fuzz;

fuzz_target!(|data: &[u8]| fuzz::rows(data));
