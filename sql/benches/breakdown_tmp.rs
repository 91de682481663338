use prost::Message;
use std::ffi::{CString, c_char, c_int};
use std::hint::black_box;
use std::time::{Duration, Instant};

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
struct R {
    parse_tree: PgQueryProtobuf,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}
unsafe extern "C" {
    fn pg_query_parse_protobuf(input: *const c_char) -> R;
    fn pg_query_free_protobuf_parse_result(result: R);
    fn pg_query_parse(input: *const c_char) -> RJ;
    fn pg_query_free_parse_result(result: RJ);
}
#[repr(C)]
struct RJ {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

fn mean(mut f: impl FnMut()) -> Duration {
    let s = Instant::now();
    let mut n = 0u32;
    while s.elapsed() < Duration::from_millis(700) {
        f();
        n += 1;
    }
    s.elapsed() / n
}

fn main() {
    let mut sql = String::from("SELECT t0.id");
    for i in 1..20 {
        sql += &format!(", t{i}.v{i}");
    }
    sql += " FROM app.t0 t0";
    for i in 1..20 {
        sql += &format!(" JOIN app.t{i} t{i} ON t{i}.parent_id = t{}.id", i - 1);
    }
    sql += " WHERE t0.created_at > now() - interval '1 day' AND t19.kind = 'x' ORDER BY t0.id LIMIT 100";
    if std::env::var("PROFILE").is_ok() {
        let s = Instant::now();
        while s.elapsed() < Duration::from_secs(4) {
            black_box(palisade_sql::analyze(&sql, &["app"]).unwrap());
        }
        return;
    }
    for (name, sql) in [
        (
            "short",
            "SELECT id, name FROM users WHERE id = $1".to_string(),
        ),
        ("join20", sql),
    ] {
        let c = CString::new(sql.clone()).unwrap();
        let raw = mean(|| unsafe {
            let r = pg_query_parse_protobuf(c.as_ptr());
            black_box(r.parse_tree.len);
            pg_query_free_protobuf_parse_result(r);
        });
        let json = mean(|| unsafe {
            let r = pg_query_parse(c.as_ptr());
            black_box(r.parse_tree);
            pg_query_free_parse_result(r);
        });
        let bytes: Vec<u8> = unsafe {
            let r = pg_query_parse_protobuf(c.as_ptr());
            let v = std::slice::from_raw_parts(r.parse_tree.data as *const u8, r.parse_tree.len)
                .to_vec();
            pg_query_free_protobuf_parse_result(r);
            v
        };
        let decode = mean(|| {
            black_box(pg_query::protobuf::ParseResult::decode(bytes.as_slice()).unwrap());
        });
        let full = mean(|| {
            black_box(pg_query::parse(&sql, 0).unwrap());
        });
        let fp = mean(|| {
            black_box(pg_query::fingerprint(&sql, 0, 0).unwrap());
        });
        let norm = mean(|| {
            black_box(pg_query::normalize(&sql).unwrap());
        });
        let an = mean(|| {
            black_box(palisade_sql::analyze(&sql, &["app"]).unwrap());
        });
        println!(
            "{name}: bytes={} raw C parse+pb={raw:?} C json={json:?} decode={decode:?} pg_query::parse={full:?} fingerprint={fp:?} normalize={norm:?} analyze={an:?}",
            bytes.len()
        );
    }
}
