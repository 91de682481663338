//! Column plans and the DataRow rewrite.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::detect::{Detectors, Layout};
use super::method::{HashKey, MaskMethod, is_text_like, oid, put_masked_text};
use crate::codec::{CodecError, DataRow, HEADER_LEN};

/// Result value format of a column (PostgreSQL format code 0/1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Code 0: the type's text output.
    #[default]
    Text,
    /// Code 1: the type's binary send format.
    Binary,
}

impl Format {
    /// The format of a wire code; `None` for codes other than 0 and 1.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::Text),
            1 => Some(Self::Binary),
            _ => None,
        }
    }

    /// The wire code.
    pub fn code(self) -> i16 {
        match self {
            Self::Text => 0,
            Self::Binary => 1,
        }
    }
}

/// What to do with one result column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnAction {
    /// Pass the value through untouched.
    Clear,
    /// The column is sensitive and the caller may not see it: hide every
    /// value with this method.
    Mask(MaskMethod),
    /// The column's origin is unknown (an expression, a view the catalog
    /// cannot see through): replace recognised secrets inside the value.
    Detect,
}

/// What to do with one result column, and what its values look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ColumnPlan {
    /// What to do.
    pub action: ColumnAction,
    /// The column's type OID from RowDescription (domains should be resolved
    /// to their base type by the caller).
    pub type_oid: u32,
    /// The column's result format.
    pub format: Format,
}

impl ColumnPlan {
    /// A plan for one column.
    pub fn new(action: ColumnAction, type_oid: u32, format: Format) -> Self {
        Self {
            action,
            type_oid,
            format,
        }
    }
}

/// What one column's values go through, decided once per result set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Copied as is.
    Copy,
    /// Replaced by NULL.
    Null,
    /// Rewritten by a masking method (never [`MaskMethod::Null`]).
    Text {
        method: MaskMethod,
        /// `"char"`: the result must stay one byte.
        single_byte: bool,
    },
    /// Detectors run over the text.
    Detect(Layout),
    /// Detectors run over binary jsonb: a version byte, then JSON text.
    DetectJsonb,
}

impl Op {
    pub(super) fn new(action: ColumnAction, type_oid: u32, format: Format) -> Self {
        match action {
            ColumnAction::Clear => Self::Copy,
            ColumnAction::Mask(MaskMethod::Null) => Self::Null,
            ColumnAction::Mask(method) if is_text_like(type_oid) => Self::Text {
                method,
                single_byte: type_oid == oid::CHAR,
            },
            // Only NULL is a valid value of every other type.
            ColumnAction::Mask(_) => Self::Null,
            ColumnAction::Detect => match (type_oid, format) {
                (oid::CHAR, _) => Self::Copy,
                (t, _) if is_text_like(t) => Self::Detect(Layout::Plain),
                (oid::JSON, _) | (oid::JSONB, Format::Text) => Self::Detect(Layout::Json),
                (oid::JSONB, Format::Binary) => Self::DetectJsonb,
                _ => Self::Copy,
            },
        }
    }
}

/// Version byte of binary jsonb.
const JSONB_VERSION: u8 = 1;

/// Columns [`MaskStats`] can name: PostgreSQL's limit on result columns.
pub const TRACKED_COLUMNS: usize = 1664;

const WORDS: usize = TRACKED_COLUMNS / 64;

/// What one rewrite (or, merged, one result set) masked, for the audit.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Values hidden by a [`ColumnAction::Mask`] (NULLs are not counted).
    pub masked: u32,
    /// Values in which a detector replaced at least one span.
    pub detected: u32,
    columns: [u64; WORDS],
    untracked: bool,
}

impl MaskStats {
    fn mark(&mut self, column: usize) {
        match self.columns.get_mut(column / 64) {
            Some(word) => *word |= 1 << (column % 64),
            None => self.untracked = true,
        }
    }

    pub(super) fn masked_at(&mut self, column: usize) {
        self.masked = self.masked.saturating_add(1);
        self.mark(column);
    }

    pub(super) fn detected_at(&mut self, column: usize) {
        self.detected = self.detected.saturating_add(1);
        self.mark(column);
    }

    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.masked == 0 && self.detected == 0
    }

    /// Whether a value of `column` (0-based) was masked or had a detection.
    pub fn contains(&self, column: usize) -> bool {
        self.columns
            .get(column / 64)
            .is_some_and(|w| w & (1 << (column % 64)) != 0)
    }

    /// Indices (0-based, ascending) of the columns that had a value masked
    /// or a detection, up to [`TRACKED_COLUMNS`].
    pub fn columns(&self) -> impl Iterator<Item = usize> + '_ {
        (0..TRACKED_COLUMNS).filter(|&c| self.contains(c))
    }

    /// Whether a column at or past [`TRACKED_COLUMNS`] was changed too
    /// (never for PostgreSQL results).
    pub fn untracked_columns(&self) -> bool {
        self.untracked
    }

    /// Adds another row's statistics, e.g. to summarise a result set.
    pub fn merge(&mut self, other: &MaskStats) {
        self.masked = self.masked.saturating_add(other.masked);
        self.detected = self.detected.saturating_add(other.detected);
        for (a, b) in self.columns.iter_mut().zip(other.columns) {
            *a |= b;
        }
        self.untracked |= other.untracked;
    }
}

impl fmt::Debug for MaskStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskStats")
            .field("masked", &self.masked)
            .field("detected", &self.detected)
            .field("columns", &self.columns().collect::<Vec<_>>())
            .field("untracked", &self.untracked)
            .finish()
    }
}

/// A row could not be rewritten. The caller must end the session: an
/// unmasked row must never reach the client. Messages never quote values.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The DataRow's lengths or counts contradict its size.
    #[error(transparent)]
    Malformed(#[from] CodecError),
    /// The row has a different number of columns than the plan.
    #[error("row has {found} columns but the result has {expected}")]
    ColumnCount {
        /// Columns in the plan.
        expected: usize,
        /// Columns in the row.
        found: usize,
    },
    /// The rewritten row or a value no longer fits its length field.
    #[error("masked row does not fit a message")]
    TooLong,
    /// A COPY row does not follow the COPY format.
    #[error("malformed COPY row: {0}")]
    Copy(&'static str),
    /// The COPY options cannot describe a valid format.
    #[error("unsupported COPY options: {0}")]
    CopyOptions(&'static str),
}

/// Masks the rows of one result set (or one COPY) by its column plan.
///
/// Built once per result set, from the plan, the process's hash key and the
/// shared detectors; each row is then rewritten with no allocation of its
/// own beyond the output buffer.
#[derive(Debug)]
pub struct RowMasker {
    pub(super) row_ops: Box<[Op]>,
    /// Ops for COPY text/csv, where every value is in text format.
    pub(super) copy_ops: Box<[Op]>,
    pub(super) key: Arc<HashKey>,
    pub(super) detectors: Arc<Detectors>,
    noop: bool,
}

impl RowMasker {
    /// A masker for a result set with these columns, in order.
    pub fn new(columns: Vec<ColumnPlan>, key: Arc<HashKey>, detectors: Arc<Detectors>) -> Self {
        let row_ops: Box<[Op]> = columns
            .iter()
            .map(|c| Op::new(c.action, c.type_oid, c.format))
            .collect();
        let copy_ops: Box<[Op]> = columns
            .iter()
            .map(|c| Op::new(c.action, c.type_oid, Format::Text))
            .collect();
        let noop = row_ops
            .iter()
            .chain(copy_ops.iter())
            .all(|op| *op == Op::Copy);
        Self {
            row_ops,
            copy_ops,
            key,
            detectors,
            noop,
        }
    }

    /// Nothing to do (every column is passed through): callers skip the
    /// rewrite entirely and relay rows as they are.
    pub fn is_noop(&self) -> bool {
        self.noop
    }

    /// Number of columns in the plan.
    pub fn columns(&self) -> usize {
        self.row_ops.len()
    }

    /// Rewrites one DataRow. `body` is the message body (after tag and
    /// length); a complete DataRow message (tag, length, body) is appended
    /// to `out`. On error `out` is left as it was.
    pub fn data_row(&self, body: &[u8], out: &mut BytesMut) -> Result<MaskStats, RewriteError> {
        let row = DataRow::from_body(body)?;
        if row.len() != self.row_ops.len() {
            return Err(RewriteError::ColumnCount {
                expected: self.row_ops.len(),
                found: row.len(),
            });
        }
        let count = u16::try_from(row.len()).map_err(|_| RewriteError::TooLong)?;
        let start = out.len();
        out.reserve(body.len().saturating_add(HEADER_LEN));
        out.put_u8(DataRow::TAG);
        out.put_i32(0);
        out.put_u16(count);
        let mut stats = MaskStats::default();
        let result = self.put_values(&row, out, &mut stats).and_then(|()| {
            let len = out.len().saturating_sub(start).saturating_sub(1);
            let len = i32::try_from(len).map_err(|_| RewriteError::TooLong)?;
            patch_i32(out, start.saturating_add(1), len);
            Ok(())
        });
        match result {
            Ok(()) => Ok(stats),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn put_values(
        &self,
        row: &DataRow<'_>,
        out: &mut BytesMut,
        stats: &mut MaskStats,
    ) -> Result<(), RewriteError> {
        for (column, (value, op)) in row.iter().zip(self.row_ops.iter()).enumerate() {
            let Some(value) = value else {
                out.put_i32(-1);
                continue;
            };
            match *op {
                Op::Copy => put_value(out, value)?,
                Op::Null => {
                    out.put_i32(-1);
                    stats.masked_at(column);
                }
                Op::Text {
                    method,
                    single_byte,
                } => {
                    length_prefixed(out, |out| {
                        put_masked_text(method, value, &self.key, single_byte, out);
                    })?;
                    stats.masked_at(column);
                }
                Op::Detect(layout) => {
                    let mut hits = 0;
                    length_prefixed(out, |out| {
                        hits = self.detectors.redact_layout(value, layout, out);
                    })?;
                    if hits > 0 {
                        stats.detected_at(column);
                    }
                }
                Op::DetectJsonb => match value.split_first() {
                    Some((&JSONB_VERSION, doc)) => {
                        let mut hits = 0;
                        length_prefixed(out, |out| {
                            out.put_u8(JSONB_VERSION);
                            hits = self.detectors.redact_layout(doc, Layout::Json, out);
                        })?;
                        if hits > 0 {
                            stats.detected_at(column);
                        }
                    }
                    // No other version exists; nothing to read.
                    _ => put_value(out, value)?,
                },
            }
        }
        Ok(())
    }
}

/// Appends an Int32 length and the value.
fn put_value(out: &mut BytesMut, value: &[u8]) -> Result<(), RewriteError> {
    out.put_i32(i32::try_from(value.len()).map_err(|_| RewriteError::TooLong)?);
    out.put_slice(value);
    Ok(())
}

/// Appends an Int32 length and whatever `write` appends, then fills in the
/// length.
fn length_prefixed(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut),
) -> Result<(), RewriteError> {
    let at = out.len();
    out.put_i32(0);
    write(out);
    let len = out.len().saturating_sub(at).saturating_sub(4);
    patch_i32(
        out,
        at,
        i32::try_from(len).map_err(|_| RewriteError::TooLong)?,
    );
    Ok(())
}

/// Overwrites the Int32 reserved at `at`.
pub(super) fn patch_i32(out: &mut BytesMut, at: usize, value: i32) {
    if let Some(slot) = out.get_mut(at..).and_then(|s| s.first_chunk_mut::<4>()) {
        *slot = value.to_be_bytes();
    }
}
