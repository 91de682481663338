//! Property tests of the masking rewriter: every row matching its plan is
//! rewritten, masked values never come out as they went in, and no
//! RowDescription, row or COPY line makes it panic.

use bytes::BytesMut;
use proptest::prelude::*;

use super::fuzz::{self, check_row, world};
use super::method::oid;
use super::{ColumnAction, ColumnPlan, Format, MaskMethod, RowMasker};
use crate::codec::backend::FieldDescription;
use crate::codec::write;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn action() -> impl Strategy<Value = ColumnAction> {
    prop_oneof![
        Just(ColumnAction::Clear),
        Just(ColumnAction::Detect),
        prop::sample::select(vec![
            MaskMethod::Redact,
            MaskMethod::Last4,
            MaskMethod::Email,
            MaskMethod::Hash,
            MaskMethod::Null,
        ])
        .prop_map(ColumnAction::Mask),
    ]
}

fn type_oid() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            oid::TEXT,
            oid::VARCHAR,
            oid::BPCHAR,
            oid::NAME,
            oid::CHAR,
            oid::JSON,
            oid::JSONB,
            23,
            17
        ]),
        any::<u32>(),
    ]
}

fn plan() -> impl Strategy<Value = ColumnPlan> {
    (action(), type_oid(), any::<bool>()).prop_map(|(a, t, binary)| {
        ColumnPlan::new(a, t, if binary { Format::Binary } else { Format::Text })
    })
}

/// Values that look like what masking is for, and anything else.
fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        Just(b"4111 1111 1111 1111".to_vec()),
        Just(b"alice@example.com".to_vec()),
        Just(b"{\"card\": \"4111111111111111\"}".to_vec()),
        Just(b"\x01{\"ssn\": \"123-45-6789\"}".to_vec()),
        "\\PC{0,16}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..24),
    ])
}

/// One result row.
type Row = Vec<Option<Vec<u8>>>;

fn plan_and_rows() -> impl Strategy<Value = (Vec<ColumnPlan>, Vec<Row>)> {
    prop::collection::vec(plan(), 0..6).prop_flat_map(|plan| {
        let n = plan.len();
        (
            Just(plan),
            prop::collection::vec(prop::collection::vec(value(), n), 1..4),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rows_follow_their_plan((plan, rows) in plan_and_rows()) {
        let w = world();
        let masker = RowMasker::new(plan.clone(), w.key.clone(), w.detectors.clone());
        for row in rows {
            let mut wire = BytesMut::new();
            write::data_row(&mut wire, row.iter().map(|v| v.as_deref())).unwrap();
            let frame = crate::codec::fuzz::one_frame(&wire);
            check_row(w, &plan, &masker, &frame);
        }
    }

    /// A RowDescription with any fields, then rows and COPY lines, through
    /// the planner and the rewriter (see `masking::fuzz::rows`).
    #[test]
    fn described_rows_never_panic(
        head in any::<[u8; 5]>(),
        fields in prop::collection::vec((16_380u32..16_390, 0i16..10, type_oid(), 0i16..2), 0..5),
        rows in prop::collection::vec(prop::collection::vec(value(), 0..6), 0..4),
        lines in prop::collection::vec("[a-z0-9@.\\\\\t,\"]{0,24}\n?", 0..4),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut wire = head.to_vec();
        let names: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
        let described: Vec<FieldDescription<'_>> = fields
            .iter()
            .zip(&names)
            .map(|(&(table_oid, column_attr, type_oid, format), name)| FieldDescription {
                name,
                table_oid: if column_attr == 0 { 0 } else { table_oid },
                column_attr,
                type_oid,
                type_size: -1,
                type_modifier: -1,
                format,
            })
            .collect();
        let mut buf = BytesMut::new();
        write::row_description(&mut buf, &described).unwrap();
        for row in &rows {
            write::data_row(&mut buf, row.iter().map(|v| v.as_deref())).unwrap();
        }
        write::copy_out_response(&mut buf, 0, &vec![0; fields.len()]).unwrap();
        for line in &lines {
            write::copy_data(&mut buf, line.as_bytes()).unwrap();
        }
        wire.extend_from_slice(&buf);
        wire.extend_from_slice(&garbage);
        fuzz::rows(&wire);
        fuzz::rows(&garbage);
    }
}
