//! Regenerates the fuzz seed corpora under `fuzz/corpus/` from real client
//! traffic: psql, pgbench, tokio-postgres and psycopg talk to a throwaway
//! PostgreSQL (the example database) through a loopback relay that records
//! both directions of every connection; the recordings are then cut into
//! the inputs of each fuzz target.
//!
//! ```sh
//! cargo run -p integration --bin capture_corpus -- fuzz/corpus
//! ```
//! (or `scripts/capture-corpus.sh`, which empties the directory first).
//! Files are named by a hash of their content; each target keeps at most
//! [`PER_TARGET`] files, each under [`MAX_FILE`] bytes.
//!
//! Input layouts (see each target's docs): `frontend` is a state byte (0
//! startup, 1 authentication, 2 ready, 3 in COPY) then client bytes;
//! `backend` is server bytes; `masking` is a flags byte, four COPY option
//! bytes, then server bytes; `sql_analyze` is SQL text; `token` is a mode
//! byte then a token (even) or `header NUL payload` (odd).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::BytesMut;
use integration::agent::seed_example;
use integration::postgres::TestPostgres;
use palisade_agent::codec::{Frame, FrameCodec, StartupCodec, write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

/// Most files kept per target.
const PER_TARGET: usize = 120;
/// Largest file kept.
const MAX_FILE: usize = 60 * 1024;
/// Messages per file, at most.
const MAX_MESSAGES: usize = 24;

/// Both directions of one connection.
#[derive(Default)]
struct Conversation {
    client: Vec<u8>,
    server: Vec<u8>,
}

type Recordings = Arc<Mutex<Vec<Arc<Mutex<Conversation>>>>>;

/// A loopback relay to `upstream` that records every connection.
async fn recorder(upstream: std::net::SocketAddr) -> anyhow::Result<(u16, Recordings)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let all: Recordings = Arc::default();
    let sink = all.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let conversation = Arc::new(Mutex::new(Conversation::default()));
            lock(&sink).push(conversation.clone());
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    relay(client, server, conversation).await;
                }
            });
        }
    });
    Ok((port, all))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn relay(client: TcpStream, server: TcpStream, conversation: Arc<Mutex<Conversation>>) {
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let up_sink = conversation.clone();
    tokio::join!(
        pump(client_rd, server_wr, |chunk| lock(&up_sink)
            .client
            .extend_from_slice(chunk)),
        pump(server_rd, client_wr, |chunk| lock(&conversation)
            .server
            .extend_from_slice(chunk)),
    );
}

/// Copies `from` to `to` until either side closes, handing each chunk to
/// `keep` on the way.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    keep: impl Fn(&[u8]),
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let chunk = buf.get(..n).unwrap_or_default();
        keep(chunk);
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Runs a client program, failing on a non-zero exit.
async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().with_context(|| format!("running {program}"))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .with_context(|| format!("{program} timed out"))??;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

const PSQL_SCRIPT: &str = r#"
SELECT * FROM orders ORDER BY id LIMIT 5;
SELECT id, name, email, ssn, phone FROM customers;
SELECT c.email, p.card_number, upper(c.ssn) AS s FROM customers c JOIN payments p ON p.customer_id = c.id;
\d customers
\dt
SELECT jsonb_build_object('card', card_number) AS doc, card_number::bpchar, 'x'::"char" FROM payments;
COPY (SELECT * FROM customers) TO STDOUT;
COPY (SELECT * FROM customers) TO STDOUT (FORMAT csv, HEADER true);
COPY (SELECT id, email FROM customers) TO STDOUT (FORMAT csv, DELIMITER ';', QUOTE '''', NULL 'NULL');
BEGIN;
INSERT INTO migrations_tmp.backfill VALUES (11), (12);
UPDATE migrations_tmp.backfill SET id = id + 100 WHERE id > 10;
DELETE FROM migrations_tmp.backfill WHERE id > 100;
ROLLBACK;
SELECT 1; SELECT 2; SELECT now(), current_user, version();
SET search_path = reporting, public;
SHOW search_path;
EXPLAIN SELECT * FROM daily;
PREPARE q(int) AS SELECT * FROM public.orders WHERE id = $1;
EXECUTE q(3);
DEALLOCATE q;
SELECT pg_sleep(0);
\copy migrations_tmp.backfill FROM stdin
21
22
\.
SELECT count(*) FROM migrations_tmp.backfill;
"#;

const PSYCOPG_SCRIPT: &str = r#"
import sys, psycopg
conninfo = sys.argv[1]
with psycopg.connect(conninfo) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM orders WHERE id = %s", (5,))
        cur.fetchall()
        cur.execute("SELECT id, email, ssn FROM customers WHERE name = %s AND id > %s", ("Ada", 0))
        cur.fetchall()
        cur.execute("SELECT %s::text, %s::int, %s::numeric, %s::bytea", ("t", 1, 2.5, b"\x00\x01"))
        cur.fetchall()
        cur.execute("SELECT card_number FROM payments", prepare=True)
        cur.execute("SELECT card_number FROM payments", prepare=True)
        cur.fetchall()
        cur.executemany("INSERT INTO migrations_tmp.backfill VALUES (%s)", [(31,), (32,)])
        with cur.copy("COPY migrations_tmp.backfill FROM STDIN") as copy:
            copy.write_row((41,))
            copy.write_row((42,))
        with cur.copy("COPY (SELECT * FROM customers) TO STDOUT") as copy:
            for row in copy.rows():
                pass
    conn.rollback()
with psycopg.connect(conninfo) as conn:
    conn.execute("SELECT email FROM customers", binary=True).fetchall()
    conn.execute("SELECT 1").fetchall()
"#;

async fn tokio_postgres_session(conninfo: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _closed = connection.await;
    });
    client
        .simple_query("SELECT * FROM orders LIMIT 3; SELECT email FROM customers")
        .await?;
    let rows = client
        .query(
            "SELECT id, total FROM orders WHERE id > $1 AND id < $2",
            &[&1i32, &5i32],
        )
        .await?;
    anyhow::ensure!(!rows.is_empty());
    let statement = client
        .prepare("SELECT name, email, ssn, phone FROM customers WHERE id = $1")
        .await?;
    client.query(&statement, &[&1i32]).await?;
    client
        .query_opt("SELECT card_number FROM payments WHERE id = $1", &[&1i32])
        .await?;
    client
        .execute("INSERT INTO migrations_tmp.backfill VALUES ($1)", &[&51i32])
        .await?;
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY migrations_tmp.backfill FROM STDIN")
        .await?;
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"61\n62\n")).await?;
    sink.finish().await?;
    let stream = client
        .copy_out("COPY (SELECT * FROM customers) TO STDOUT (FORMAT csv)")
        .await?;
    futures::pin_mut!(stream);
    while futures::StreamExt::next(&mut stream)
        .await
        .transpose()?
        .is_some()
    {}
    let _ = client.execute("SELECT * FROM no_such_table", &[]).await;
    client
        .batch_execute("BEGIN; SELECT 1; SAVEPOINT a; ROLLBACK TO a; COMMIT")
        .await?;
    Ok(())
}

/// Content-addressed files for one target.
#[derive(Default)]
struct Corpus {
    files: BTreeMap<String, Vec<BTreeMap<u64, Vec<u8>>>>,
}

impl Corpus {
    /// Adds an input under `target`, in priority `tier` (lower is kept first
    /// when a target has more than [`PER_TARGET`] inputs).
    fn add(&mut self, target: &str, tier: usize, input: Vec<u8>) {
        if input.is_empty() || input.len() > MAX_FILE {
            return;
        }
        let mut h = DefaultHasher::new();
        input.hash(&mut h);
        let tiers = self.files.entry(target.to_owned()).or_default();
        while tiers.len() <= tier {
            tiers.push(BTreeMap::new());
        }
        if let Some(t) = tiers.get_mut(tier) {
            t.insert(h.finish(), input);
        }
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        for (target, tiers) in &self.files {
            let dir = dir.join(target);
            std::fs::create_dir_all(&dir)?;
            let mut kept = 0;
            'tiers: for tier in tiers {
                for (hash, input) in tier {
                    if kept == PER_TARGET {
                        break 'tiers;
                    }
                    std::fs::write(dir.join(format!("{hash:016x}")), input)?;
                    kept += 1;
                }
            }
            println!("{target}: {kept} files");
        }
        Ok(())
    }
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    let mut codec = FrameCodec::new(1 << 30);
    while let Ok(Some(f)) = codec.decode(&mut src) {
        out.push(f);
    }
    out
}

fn concat(frames: &[&Frame]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| f.raw().iter().copied())
        .collect()
}

/// Cuts one conversation into inputs.
fn cut(conversation: &Conversation, corpus: &mut Corpus) {
    // Client: startup packets, then tagged messages.
    let mut src = BytesMut::from(&conversation.client[..]);
    let mut startup = Vec::new();
    let before = src.len();
    while let Ok(Some(packet)) = StartupCodec.decode(&mut src) {
        if matches!(packet, palisade_agent::codec::StartupPacket::Startup { .. }) {
            break;
        }
    }
    startup.push(0u8);
    startup.extend_from_slice(
        conversation
            .client
            .get(..before - src.len())
            .unwrap_or_default(),
    );
    corpus.add("frontend", 0, startup);
    let client = frames(&src);
    let mut ready: Vec<&Frame> = Vec::new();
    let mut copy: Vec<&Frame> = Vec::new();
    for f in &client {
        match f.tag() {
            b'p' => {
                let mut input = vec![1u8];
                input.extend_from_slice(f.raw());
                corpus.add("frontend", 0, input);
            }
            b'd' | b'c' | b'f' => {
                // Big CopyData chunks (pgbench -i) only repeat the small ones.
                if f.wire_len() > 8 * 1024 {
                    continue;
                }
                copy.push(f);
                if f.tag() != b'd' || copy.len() >= 4 {
                    let mut input = vec![3u8];
                    input.extend(concat(&copy));
                    corpus.add("frontend", 0, input);
                    copy.clear();
                }
            }
            tag => {
                if matches!(tag, b'Q' | b'P') {
                    let sql = match tag {
                        b'Q' => palisade_agent::codec::Query::from_frame(f).map(|q| q.sql),
                        _ => palisade_agent::codec::Parse::from_frame(f).map(|p| p.sql),
                    };
                    if let Ok(sql) = sql {
                        corpus.add("sql_analyze", 0, sql.as_bytes().to_vec());
                    }
                }
                ready.push(f);
                if matches!(tag, b'S' | b'Q' | b'X') || ready.len() >= MAX_MESSAGES {
                    let mut input = vec![2u8];
                    input.extend(concat(&ready));
                    corpus.add("frontend", 0, input);
                    ready.clear();
                }
            }
        }
    }
    // Server: the first byte may answer an SSLRequest; everything else is
    // tagged. Cut after each ReadyForQuery, keeping a few rows each.
    let server = frames(&conversation.server);
    let mut batch: Vec<&Frame> = Vec::new();
    let mut rows = 0;
    for f in &server {
        if f.tag() == b'D' || f.tag() == b'd' {
            rows += 1;
            if rows > 6 {
                continue;
            }
        }
        batch.push(f);
        if f.tag() == b'Z' || batch.len() >= MAX_MESSAGES {
            corpus.add("backend", usize::from(batch.len() < 3), concat(&batch));
            if batch.iter().any(|f| matches!(f.tag(), b'T' | b'H')) {
                let kept: Vec<&Frame> = batch
                    .iter()
                    .copied()
                    .filter(|f| matches!(f.tag(), b'T' | b'H' | b'D' | b'd'))
                    .collect();
                let body = concat(&kept);
                for head in [
                    [0u8, 0, 0, 0, 0],
                    [1, 0, 0, 0, 0],
                    [2, 0, 0, 0, 0],
                    [6, b';', b'\'', b'\'', b'N'],
                ] {
                    let mut input = head.to_vec();
                    input.extend_from_slice(&body);
                    corpus.add("masking", 0, input);
                }
            }
            batch.clear();
            rows = 0;
        }
    }
}

/// Inputs the clients above cannot produce: the other startup packets, a
/// cleartext token as the agent's clients send it, and tokens.
fn synthetic(corpus: &mut Corpus) -> anyhow::Result<()> {
    let mut b = BytesMut::new();
    write::ssl_request(&mut b);
    corpus.add("frontend", 0, [&[0u8][..], &b].concat());
    b.clear();
    write::gssenc_request(&mut b);
    corpus.add("frontend", 0, [&[0u8][..], &b].concat());
    b.clear();
    write::cancel_request(&mut b, 4242, &[7; 32])?;
    corpus.add("frontend", 0, [&[0u8][..], &b].concat());
    b.clear();
    write::startup_message_with_minor(
        &mut b,
        2,
        &[
            ("user", "ci"),
            ("database", "prod"),
            ("application_name", "psql"),
            ("_pq_.x", "1"),
        ],
    )?;
    corpus.add("frontend", 0, [&[0u8][..], &b].concat());

    b.clear();
    write::copy_data(&mut b, b"1\tAda\tada@example.com\n")?;
    write::copy_data(&mut b, b"2,\"q\"\"uoted\",\\N\n")?;
    write::copy_fail(&mut b, "client gave up")?;
    corpus.add("frontend", 0, [&[3u8][..], &b].concat());

    // Tokens: signed with the test-only key of the `token` target, which
    // expire in 2100; header and payload pairs for the signing mode.
    let key = jsonwebtoken::EncodingKey::from_ed_pem(include_bytes!(
        "../../../pdp/tests/fixtures/oidc/test-only-ed25519.pem"
    ))?;
    let iss = "https://token.fuzz.example";
    let claims = [
        serde_json::json!({"iss": iss, "aud": "palisade", "sub": "repo:acme/app:environment:prod",
            "exp": 4_102_444_800u64, "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64,
            "repository": "acme/app", "repository_owner": "acme", "run_id": "4242", "sha": "a1b2c3",
            "groups": ["ci-generated-code"]}),
        serde_json::json!({"iss": iss, "aud": ["palisade", "other"], "sub": "project_path:acme/infra",
            "exp": 4_102_444_800u64, "groups": "dba", "namespace_path": "acme"}),
        serde_json::json!({"iss": iss, "aud": "palisade", "sub": "alice", "exp": 1_000_000_000u64}),
        serde_json::json!({"iss": "https://evil.example", "aud": "palisade", "sub": "x", "exp": 4_102_444_800u64}),
    ];
    let headers = [
        serde_json::json!({"alg": "EdDSA", "kid": "fuzz-ed25519", "typ": "JWT"}),
        serde_json::json!({"alg": "EdDSA"}),
        serde_json::json!({"alg": "none"}),
        serde_json::json!({"alg": "RS256", "kid": "fuzz-ed25519"}),
        serde_json::json!({"alg": "EdDSA", "kid": "fuzz-ed25519", "crit": ["exp"]}),
    ];
    for header in &headers {
        for payload in &claims {
            let mut input = vec![1u8];
            input.extend_from_slice(header.to_string().as_bytes());
            input.push(0);
            input.extend_from_slice(payload.to_string().as_bytes());
            corpus.add("token", 0, input);
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(payload.to_string())
            );
            let sig = jsonwebtoken::crypto::sign(
                signing_input.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::EdDSA,
            )?;
            let mut input = vec![0u8];
            input.extend_from_slice(format!("{signing_input}.{sig}").as_bytes());
            corpus.add("token", 0, input);
        }
    }
    Ok(())
}

async fn capture(out: PathBuf) -> anyhow::Result<()> {
    let pg = TestPostgres::start().await?;
    seed_example(&pg).await?;
    let upstream: std::net::SocketAddr = format!("{}:{}", pg.host(), pg.port()).parse()?;
    let (port, recordings) = recorder(upstream).await?;
    let port = port.to_string();
    let password = pg.superuser_password().to_owned();
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={} dbname=prod sslmode=disable",
        pg.superuser()
    );
    let env = [("PGPASSWORD", password.as_str())];
    run(
        "psql",
        &["-X", "-d", &conninfo, "-v", "ON_ERROR_STOP=1"],
        &env,
        PSQL_SCRIPT,
    )
    .await?;
    let pgbench = ["-h", "127.0.0.1", "-p", &port, "-U", pg.superuser()];
    run(
        "pgbench",
        &[&pgbench[..], &["-i", "-s", "1", "-q", "prod"]].concat(),
        &env,
        "",
    )
    .await?;
    for mode in ["simple", "extended", "prepared"] {
        run(
            "pgbench",
            &[&pgbench[..], &["-t", "5", "-M", mode, "prod"]].concat(),
            &env,
            "",
        )
        .await?;
    }
    let with_password = format!("{conninfo} password={password}");
    tokio_postgres_session(&with_password).await?;
    run("python3", &["-c", PSYCOPG_SCRIPT, &with_password], &[], "").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut corpus = Corpus::default();
    for conversation in lock(&recordings).iter() {
        cut(&lock(conversation), &mut corpus);
    }
    synthetic(&mut corpus)?;
    corpus.write(&out)
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: capture_corpus <fuzz/corpus directory>")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(capture(out))
}
