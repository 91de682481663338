//! Fuzzing entry point for the DataRow and COPY masking rewriter, given arbitrary RowDescriptions,
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

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "fuzz helpers fail loudly on a broken invariant, by design"
)]

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use palisade_sql::StatementKind;
use tokio_util::codec::Decoder;

use super::catalog::Snapshot;
use super::method::{REDACTED, is_text_like, oid};
use super::plan::{self, Provenance};
use super::{
    ColumnAction, ColumnPlan, CopyText, Detectors, Format, HashKey, MaskMethod, RowMasker,
};
use crate::codec::fuzz::one_frame;
use crate::codec::{CopyResponse, DataRow, Frame, FrameCodec, RowDescription};

/// Frames until the first error or incomplete frame.
fn decode_all(bytes: &[u8]) -> Vec<Frame> {
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    let mut codec = FrameCodec::new(1 << 20);
    while let Ok(Some(f)) = codec.decode(&mut src) {
        out.push(f);
    }
    out
}

const METHODS: [MaskMethod; 5] = [
    MaskMethod::Redact,
    MaskMethod::Last4,
    MaskMethod::Email,
    MaskMethod::Hash,
    MaskMethod::Null,
];

/// The fixed snapshot, key and detectors every input is masked with.
pub struct World {
    /// Masked origins: tables 16384..16484, columns 1..=8, every method.
    pub snapshot: Snapshot,
    /// The hash key.
    pub key: Arc<HashKey>,
    /// The built-in detectors.
    pub detectors: Arc<Detectors>,
}

/// The shared [`World`].
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // Table OIDs of a fresh database start at 16384; mask a spread of
        // them with every method.
        let mut snapshot = Snapshot::default();
        for table in 16_384u32..16_484 {
            for attnum in 1i16..=8 {
                let m = METHODS[(table as usize + attnum as usize) % METHODS.len()];
                snapshot = snapshot.with_origin(table, attnum, m);
            }
        }
        World {
            snapshot,
            key: Arc::new(HashKey::from_bytes(b"fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-32").unwrap()),
            detectors: Arc::new(Detectors::builtin().unwrap()),
        }
    })
}

/// What a masking method must make of a non-NULL text value.
pub fn expected_text(method: MaskMethod, value: &[u8], key: &HashKey) -> Vec<u8> {
    match method {
        MaskMethod::Redact | MaskMethod::Null => REDACTED.to_vec(),
        MaskMethod::Hash => {
            let mac = key.mac(value);
            let mut out = b"h:".to_vec();
            for b in &mac[..12] {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            out
        }
        MaskMethod::Last4 => match std::str::from_utf8(value) {
            Ok(s) => {
                let n = s.chars().count();
                let hidden = if n <= 4 { n } else { n - 4 };
                let mut out = vec![b'*'; hidden];
                if n > 4 {
                    let tail: String = s.chars().skip(hidden).collect();
                    out.extend_from_slice(tail.as_bytes());
                }
                out
            }
            Err(_) => REDACTED.to_vec(),
        },
        MaskMethod::Email => match std::str::from_utf8(value) {
            Ok(s) => match s.rfind('@') {
                Some(at) if at > 0 && at + 1 < s.len() => {
                    let mut out = b"***".to_vec();
                    out.extend_from_slice(&s.as_bytes()[at..]);
                    out
                }
                _ => REDACTED.to_vec(),
            },
            Err(_) => REDACTED.to_vec(),
        },
    }
}

/// Masks one DataRow and checks the result against the plan.
pub fn check_row(world: &World, plan: &[ColumnPlan], masker: &RowMasker, frame: &Frame) {
    let body = frame.body();
    let mut out = BytesMut::new();
    let result = masker.data_row(body, &mut out);
    let Ok(row) = DataRow::from_body(body) else {
        assert!(result.is_err(), "a malformed DataRow was rewritten");
        assert!(out.is_empty());
        return;
    };
    if row.len() != plan.len() {
        assert!(
            result.is_err(),
            "a DataRow of the wrong width was rewritten"
        );
        assert!(out.is_empty());
        return;
    }
    result.unwrap_or_else(|e| panic!("a DataRow matching its plan was refused: {e}"));
    let masked = one_frame(&out);
    assert_eq!(masked.tag(), b'D');
    let masked = DataRow::from_body(masked.body()).expect("the rewrite is a DataRow");
    assert_eq!(masked.len(), row.len());
    for ((column, before), after) in plan.iter().zip(row.iter()).zip(masked.iter()) {
        check_value(world, column, before, after);
    }
}

fn check_value(world: &World, column: &ColumnPlan, before: Option<&[u8]>, after: Option<&[u8]>) {
    let Some(value) = before else {
        assert_eq!(after, None, "a NULL became a value");
        return;
    };
    match column.action {
        ColumnAction::Clear => assert_eq!(after, Some(value)),
        ColumnAction::Mask(MaskMethod::Null) => assert_eq!(after, None),
        ColumnAction::Mask(_) if !is_text_like(column.type_oid) => assert_eq!(after, None),
        ColumnAction::Mask(_) if column.type_oid == oid::CHAR => assert_eq!(after, Some(&b"*"[..])),
        ColumnAction::Mask(method) => {
            let after = after.expect("a masked text value stays a value");
            assert_eq!(
                after,
                expected_text(method, value, &world.key),
                "{method} of {value:?}"
            );
        }
        ColumnAction::Detect => {
            let after = after.expect("a detected value stays a value");
            if is_text_like(column.type_oid) && column.type_oid != oid::CHAR {
                let mut again = Vec::new();
                let hits = world.detectors.redact(after, &mut again);
                assert_eq!(hits, 0, "a secret survived detection: {after:?}");
            }
        }
    }
}

/// Masks one COPY row and checks what can be checked without parsing it.
pub fn check_copy_row(masker: &RowMasker, plan: &[ColumnPlan], text: &CopyText, frame: &Frame) {
    let mut out = BytesMut::new();
    match masker.copy_row(frame.body(), text, &mut out) {
        Ok(_) => {
            let masked = one_frame(&out);
            assert_eq!(masked.tag(), b'd');
            if plan.iter().all(|c| c.action == ColumnAction::Clear) {
                assert_eq!(masked.body(), frame.body(), "a clear COPY row changed");
            }
        }
        Err(_) => assert!(out.is_empty(), "a refused COPY row left bytes behind"),
    }
}

/// Plans and masks the backend messages in `data` (see the module docs).
pub fn rows(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let (head, stream) = data.split_at(5);
    let flags = head[0];
    let world = world();
    let kind = if flags & 1 == 0 {
        StatementKind::Select
    } else {
        StatementKind::Show
    };
    let provenance = Provenance {
        lineage: None,
        kind,
        functions: &[],
    };
    let mut text = if flags & 2 == 0 {
        CopyText::text()
    } else {
        CopyText::csv()
    };
    if flags & 4 != 0 {
        text.delimiter = head[1];
        text.quote = head[2];
        text.escape = head[3];
        text.null = if head[4] == 0 {
            Vec::new()
        } else {
            vec![head[4]]
        };
    }
    let mut current: Option<(Vec<ColumnPlan>, RowMasker)> = None;
    for frame in decode_all(stream) {
        match frame.tag() {
            b'T' => {
                current = RowDescription::from_body(frame.body()).ok().map(|d| {
                    let plan = plan::for_rows(&d.fields, &world.snapshot, provenance);
                    assert_eq!(plan.len(), d.fields.len());
                    for (p, f) in plan.iter().zip(&d.fields) {
                        assert_eq!(p.type_oid, f.type_oid);
                        if let Some(m) = world.snapshot.origin(f.table_oid, f.column_attr) {
                            assert_eq!(p.action, ColumnAction::Mask(m), "a masked origin passed");
                        }
                        if f.table_oid == 0 && kind == StatementKind::Select {
                            assert_ne!(p.action, ColumnAction::Clear, "a computed column passed");
                        }
                        assert_eq!(p.format == Format::Binary, f.format == 1);
                    }
                    let masker =
                        RowMasker::new(plan.clone(), world.key.clone(), world.detectors.clone());
                    (plan, masker)
                });
            }
            b'H' => {
                current = CopyResponse::from_body(frame.body()).ok().map(|c| {
                    let plan = plan::for_copy(c.column_formats.len(), &world.snapshot, provenance);
                    let masker =
                        RowMasker::new(plan.clone(), world.key.clone(), world.detectors.clone());
                    (plan, masker)
                });
            }
            b'D' => {
                if let Some((plan, masker)) = &current {
                    check_row(world, plan, masker, &frame);
                }
            }
            b'd' => {
                if let Some((plan, masker)) = &current {
                    check_copy_row(masker, plan, &text, &frame);
                }
            }
            _ => {}
        }
    }
}
