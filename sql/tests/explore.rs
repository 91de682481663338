#[test]
fn explore() {
    let path: Vec<&str> = vec![];
    let input = std::fs::read_to_string("/tmp/explore.sql").unwrap();
    for sql in input.split("\n---\n") {
        let sql = sql.trim();
        if sql.is_empty() { continue; }
        println!("=== {sql}");
        match palisade_sql::analyze(sql, &path) {
            Ok(stmts) => for s in stmts {
                let a = &s.attributes;
                let rels = |v: &Vec<palisade_sql::Relation>| v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
                let cols = a.filtered_columns.iter().map(|c| format!("{}:{}", c.relation.as_ref().map(|r| r.to_string()).unwrap_or("?".into()), c.column)).collect::<Vec<_>>().join(",");
                println!("  [{}] kind={} inner={:?} R=[{}] W=[{}] F={:?} where={} limit={} ddl={} obj={:?} cols=[{}] prep={:?} exec={:?} dealloc={:?} tx={:?} copy={:?} sp={:?}",
                    s.text, a.kind, a.inner_kind.map(|k| k.as_str()), rels(&a.reads), rels(&a.writes), a.functions, a.has_where, a.has_limit, a.is_ddl, a.object_name, cols, s.sql_prepare, s.sql_execute, s.sql_deallocate, s.transaction, s.copy, s.sets_search_path);
            },
            Err(e) => println!("  ERR {e:?}"),
        }
    }
}
