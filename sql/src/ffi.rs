//! The one thing pg_query's Rust API drops: where a syntax error is.
//!
//! Called only after a parse already failed, to put a caret under the
//! query. The structs mirror `PgQueryError` and `PgQueryParseResult` of
//! libpg_query's `pg_query.h`, unchanged since libpg_query 10; the tests
//! in `parse.rs` check the cursor against known positions.

use std::ffi::{CString, c_char, c_int};

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobuf {
    len: usize,
    data: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobufParseResult {
    parse_tree: PgQueryProtobuf,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

unsafe extern "C" {
    fn pg_query_parse_protobuf(input: *const c_char) -> PgQueryProtobufParseResult;
    fn pg_query_free_protobuf_parse_result(result: PgQueryProtobufParseResult);
}

/// Byte offset of the syntax error in `sql`, if the parser reports one.
pub(crate) fn error_cursor(sql: &str) -> Option<usize> {
    let input = CString::new(sql).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the
    // call; the result is freed exactly once below, and `error` is only
    // read while it is non-null and before the free.
    let position = unsafe {
        let result = pg_query_parse_protobuf(input.as_ptr());
        let position = result.error.as_ref().map(|e| e.cursorpos);
        pg_query_free_protobuf_parse_result(result);
        position
    };
    // PostgreSQL counts characters from 1; 0 means "no position".
    let chars = usize::try_from(position?).ok()?.checked_sub(1)?;
    Some(
        sql.char_indices()
            .nth(chars)
            .map_or(sql.len(), |(at, _)| at),
    )
}
