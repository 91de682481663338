use palisade_sql::analyze;
/// A small deterministic generator: no dependency, same inputs every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "DELETE",
    "UPDATE",
    "SET",
    "INSERT",
    "INTO",
    "VALUES",
    "WITH",
    "AS",
    "(",
    ")",
    ",",
    ";",
    "*",
    "t",
    "u",
    "\"Q\"",
    "s.t",
    "1",
    "'x'",
    "$1",
    "=",
    "AND",
    "OR",
    "JOIN",
    "ON",
    "USING",
    "RETURNING",
    "LIMIT",
    "ALL",
    "UNION",
    "RECURSIVE",
    "COPY",
    "TO",
    "STDOUT",
    "PROGRAM",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE",
    "EXECUTE",
    "ROLE",
    "GRANT",
    "CREATE",
    "TABLE",
    "DROP",
    "ALTER",
    "MERGE",
    "WHEN",
    "MATCHED",
    "THEN",
    "DO",
    "$$x$$",
    "f(",
    "pg_read_file(",
    "--",
    "/*",
    "*/",
    "\n",
    "CURSOR",
    "FOR",
    "LATERAL",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "OVER",
    "FILTER",
    "::regclass",
    "E'\\x00'",
    "\\",
    "\"",
    "'",
];

const SNIPPETS: &[&str] = &[
    "SELECT * FROM t",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "COPY t FROM PROGRAM 'id'",
    "EXPLAIN ANALYZE DELETE FROM t",
    "PREPARE p AS UPDATE t SET a = 1",
    "CREATE SCHEMA s CREATE TABLE t (a int)",
    "SELECT * FROM a JOIN b USING (id) FOR UPDATE OF a",
    "GRANT r TO u",
    "DROP TABLE a, b",
    "SET ROLE x",
    "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE t.c",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1",
    "SELECT setval('\"a\".b', 1)",
    "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE u.c = t.d)",
    "COMMENT ON COLUMN a.b.c IS 'x'",
    "ALTER TABLE t RENAME TO u",
    "SELECT * FROM json_table('[]', '$' COLUMNS (a int)) j",
    "DECLARE c CURSOR FOR SELECT 1 FOR UPDATE",
];

#[test]
fn big_fuzz() {
    let mut rng = XorShift(12345);
    for round in 0..20000 {
        let input = match round % 3 {
            0 => {
                let len = rng.below(200);
                let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => {
                let len = rng.below(40);
                (0..len)
                    .map(|_| TOKENS[rng.below(TOKENS.len())])
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            _ => {
                // mutate a valid snippet: replace/insert tokens
                let mut words: Vec<String> = SNIPPETS[rng.below(SNIPPETS.len())]
                    .split(' ')
                    .map(str::to_owned)
                    .collect();
                for _ in 0..rng.below(4) {
                    let at = rng.below(words.len() + 1);
                    if rng.below(2) == 0 && at < words.len() {
                        words[at] = TOKENS[rng.below(TOKENS.len())].to_owned();
                    } else {
                        words.insert(at, TOKENS[rng.below(TOKENS.len())].to_owned());
                    }
                }
                words.join(" ")
            }
        };
        let _ = palisade_sql::analyze(&input, &["a", "pg_catalog"]);
    }
}
