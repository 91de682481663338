#[test]
fn depth() {
    let which = std::env::var("WHICH").unwrap();
    let n: usize = std::env::var("N").unwrap().parse().unwrap();
    let h = std::thread::Builder::new().stack_size(2 << 20).spawn(move || {
        let sql = match which.as_str() {
            "chain" => format!("SELECT a{}", " || a".repeat(n)),
            "expr" => format!("SELECT {}1{}", "1+(".repeat(n), ")".repeat(n)),
            _ => format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(n), ") a".repeat(n)),
        };
        eprintln!("parse");
        let r = pg_query::parse(&sql, 0).map(|_| ());
        eprintln!("parse done {:?}", r);
        let r = pg_query::fingerprint(&sql, 0, 0).map(|_| ());
        eprintln!("fp done {:?}", r);
        let r = pg_query::normalize(&sql).map(|_| ());
        eprintln!("norm done {:?}", r);
        let r = palisade_sql::analyze(&sql, &[]).map(|_| ());
        eprintln!("analyze done {:?}", r);
    }).unwrap();
    h.join().unwrap();
}
