//! Statement analysis (`palisade_sql::analyze`, lineage included) on
//! arbitrary SQL text.
//!
//! Invariants: analysis is deterministic; a string that analyses has at
//! least one statement, each statement's text is cut from the string; and,
//! when no statement changes the search path, each statement's text
//! analysed on its own gives the same kind and the same relations read and
//! written (so a statement cannot hide what it does in its neighbours).
#![no_main]
#![allow(clippy::panic, reason = "a fuzz target fails by panicking")]

use libfuzzer_sys::fuzz_target;

const SEARCH_PATH: &[&str] = &["public"];

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let first = palisade_sql::analyze(sql, SEARCH_PATH);
    let second = palisade_sql::analyze(sql, SEARCH_PATH);
    assert_eq!(first, second, "analysis is not deterministic");
    let Ok(statements) = first else {
        return;
    };
    assert!(!statements.is_empty());
    for s in &statements {
        assert!(
            sql.contains(s.text.as_str()),
            "text {:?} is not cut from the input",
            s.text
        );
        if let Some(l) = &s.lineage {
            let _ = l.columns.iter().map(|c| c.sources.len()).sum::<usize>();
        }
    }
    if statements.iter().any(|s| s.sets_search_path.is_some()) || statements.len() < 2 {
        return;
    }
    for s in &statements {
        let Ok(alone) = palisade_sql::analyze(&s.text, SEARCH_PATH) else {
            panic!("statement {:?} does not analyse on its own", s.text);
        };
        let [one] = alone.as_slice() else {
            continue;
        };
        assert_eq!(
            one.attributes.kind, s.attributes.kind,
            "kind of {:?}",
            s.text
        );
        assert_eq!(
            one.attributes.writes, s.attributes.writes,
            "writes of {:?}",
            s.text
        );
        assert_eq!(
            one.attributes.reads, s.attributes.reads,
            "reads of {:?}",
            s.text
        );
    }
});
