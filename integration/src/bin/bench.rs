//! `bench`: what the agent and the PDP cost, measured on this one machine
//! against direct PostgreSQL and pgbouncer (issue 8).
//!
//! Starts a throwaway PostgreSQL with a `bench` database (`pgbench -i`), the
//! PDP in this process with the example policies, the release `palisade-agent`
//! binary as its own process, and pgbouncer in session mode when it is
//! installed. Then, each section selectable with `--only`:
//!
//! - `pgbench`: select-only in the three protocol modes at 1 and 8 clients,
//!   the TPC-B-like mix at 8 clients and a 100,000-row result, run against
//!   direct PostgreSQL, the agent and pgbouncer in turn (interleaved), for
//!   `--rounds` rounds of `--seconds` each; per case a table (median TPS and
//!   mean latency per target, ratios) and one JSON line;
//! - `rpc`: `Decide` calls over mutual TLS on loopback with 1 and 16
//!   concurrent callers: decisions/s, p50 and p99;
//! - `memory`: the agent's resident memory before and after opening
//!   `--connections` idle client connections.
//!
//! It is a report: nothing is asserted. Run it with `scripts/bench.sh`, which
//! installs pgbouncer and builds the release binaries first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use integration::postgres::{PostgresOptions, TestPostgres, find_bin_dir};
use integration::stack::{AUDIENCE, Fixture, RunningPdp, bin_dir, install_crypto};
use palisade_cli::token::DevClaims;
use palisade_proto::v1 as pb;
use palisade_proto::v1::decision_service_client::DecisionServiceClient;
use serde_json::json;
use tonic::transport::Channel;

/// Where pgbouncer is looked for when it is not on `PATH`.
const PGBOUNCER_PATH: &str = "/usr/sbin/pgbouncer";
/// The benchmark database on the throwaway cluster.
const BENCH_DB: &str = "bench";
/// The agent target clients name as their database (the example
/// `targets.toml` knows `prod` and `staging`); it points at [`BENCH_DB`].
const AGENT_TARGET: &str = "staging";
/// Rows returned by the streaming case.
const STREAM_ROWS: u64 = 100_000;
/// The statement the `Decide` RPC benchmark asks about.
const RPC_SQL: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 1";
/// Concurrent connection attempts in the memory benchmark.
const CONNECT_BATCH: usize = 50;

const USAGE: &str = "\
usage: bench [--rounds N] [--seconds S] [--only pgbench|rpc|decision|memory[,...]] [--skip-memory]
             [--scale N] [--connections N] [--cases NAME[,...]]
             [--agent-threads N] [--agent-no-audit]

  --rounds N        rounds of the pgbench cases, targets interleaved (default 2)
  --seconds S       duration of each pgbench run and of each RPC run (default 15)
  --only LIST       sections to run: pgbench, rpc, decision, memory, all (default all)
  --skip-memory     leave out the idle-connection memory measurement
  --scale N         pgbench -i scale factor (default 10)
  --connections N   idle client connections opened in the memory section (default 1000)
  --cases LIST      pgbench cases to run, by name (default all): select-simple-c1,
                    select-extended-c1, select-prepared-c1, select-simple-c8,
                    select-extended-c8, select-prepared-c8, tpcb-c8, rows100k-c1
  --agent-threads N the agent's worker_threads (default: its own, one per CPU)
  --agent-no-audit  run the agent with audit.disabled, to see what auditing costs
                    (a diagnostic: the agent's normal configuration audits)";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    rounds: usize,
    seconds: u64,
    scale: u32,
    connections: usize,
    pgbench: bool,
    rpc: bool,
    /// The in-process decision latency (no database, no network).
    decision: bool,
    memory: bool,
    /// pgbench cases to run (empty: all).
    cases: Vec<String>,
    /// The agent's `worker_threads`.
    agent_threads: Option<usize>,
    /// Run the agent without its audit trail (diagnostic).
    agent_no_audit: bool,
}

impl Options {
    fn parse() -> Result<Option<Self>> {
        let mut opts = Self {
            rounds: 2,
            seconds: 15,
            scale: 10,
            connections: 1000,
            pgbench: true,
            rpc: true,
            decision: true,
            memory: true,
            cases: Vec::new(),
            agent_threads: None,
            agent_no_audit: false,
        };
        let mut skip_memory = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args
                        .next()
                        .with_context(|| format!("{name} needs a value\n{USAGE}")),
                }
            };
            match flag.as_str() {
                "--rounds" => opts.rounds = parse_number(&value("--rounds")?, "--rounds")?,
                "--seconds" => opts.seconds = parse_number(&value("--seconds")?, "--seconds")?,
                "--scale" => opts.scale = parse_number(&value("--scale")?, "--scale")?,
                "--connections" => {
                    opts.connections = parse_number(&value("--connections")?, "--connections")?;
                }
                "--only" => {
                    let list = value("--only")?;
                    opts.pgbench = false;
                    opts.rpc = false;
                    opts.decision = false;
                    opts.memory = false;
                    for section in list.split(',').map(str::trim) {
                        match section {
                            "pgbench" => opts.pgbench = true,
                            "rpc" => opts.rpc = true,
                            "decision" => opts.decision = true,
                            "memory" => opts.memory = true,
                            "all" => {
                                opts.pgbench = true;
                                opts.rpc = true;
                                opts.decision = true;
                                opts.memory = true;
                            }
                            other => bail!("--only: unknown section {other:?}\n{USAGE}"),
                        }
                    }
                }
                "--cases" => {
                    opts.cases = value("--cases")?
                        .split(',')
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty())
                        .collect();
                }
                "--agent-threads" => {
                    opts.agent_threads =
                        Some(parse_number(&value("--agent-threads")?, "--agent-threads")?);
                }
                "--agent-no-audit" => opts.agent_no_audit = true,
                "--skip-memory" => skip_memory = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        if skip_memory {
            opts.memory = false;
        }
        if opts.rounds == 0 || opts.seconds == 0 || opts.scale == 0 || opts.connections == 0 {
            bail!("--rounds, --seconds, --scale and --connections must be at least 1");
        }
        Ok(Some(opts))
    }
}

fn parse_number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T> {
    text.parse()
        .ok()
        .with_context(|| format!("{name}: {text:?} is not a number\n{USAGE}"))
}

// The same allocator as the agent and PDP binaries, for the PDP this
// process hosts.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let opts = match Options::parse() {
        Ok(Some(opts)) => opts,
        Ok(None) => return Ok(()),
        Err(e) => {
            // A usage error: the message and the usage, no backtrace.
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    install_crypto();
    let started = Instant::now();
    let pg_bin = find_bin_dir()?;
    let pgbouncer = find_pgbouncer();
    print_machine(&pg_bin, pgbouncer.as_deref(), &opts);

    let fixture = Fixture::new()?;
    let pdp = RunningPdp::start(fixture.pdp_config()).await?;
    // Longer-lived than `Fixture::token`'s 15 minutes: a default run takes
    // about that long, and every pgbench run opens new sessions.
    let mut claims = DevClaims::new("bench", AUDIENCE);
    claims.groups = vec!["dba".to_owned()];
    claims.ttl = Duration::from_secs(12 * 3600);
    let token = fixture.issuer.mint(&claims)?;
    println!(
        "PDP: in this process (release build), example policies, mutual TLS on {}; identity: \
         group dba (policy dba-all-statements allows every statement)",
        pdp.url()
    );

    let mut summary = Summary::default();
    let pg = if opts.pgbench || opts.memory {
        let started_pg = Instant::now();
        let pg = TestPostgres::start_with(PostgresOptions {
            log_statements: false,
            extra_conf: vec![
                ("max_connections".into(), "1100".into()),
                ("shared_buffers".into(), "256MB".into()),
            ],
            ..PostgresOptions::default()
        })
        .await?;
        pg.psql("postgres", &format!("CREATE DATABASE {BENCH_DB}"))
            .await?;
        println!(
            "PostgreSQL: throwaway cluster on 127.0.0.1:{} (fsync off, shared_buffers 256MB, \
             max_connections 1100, SCRAM), ready in {:.1} s",
            pg.port(),
            started_pg.elapsed().as_secs_f64()
        );
        Some(pg)
    } else {
        None
    };

    if opts.pgbench
        && let Some(pg) = &pg
    {
        pgbench_section(
            &opts,
            &fixture,
            &pdp,
            pg,
            pgbouncer.as_deref(),
            &token,
            &mut summary,
        )
        .await?;
    }
    if opts.rpc {
        rpc_section(&opts, &fixture, &pdp, &token, &mut summary).await?;
    }
    if opts.decision {
        decision_section(&mut summary).await?;
    }
    if opts.memory
        && let Some(pg) = &pg
    {
        memory_section(&opts, &fixture, &pdp, pg, &token, &mut summary).await?;
    }
    summary.print();
    println!(
        "\ntotal wall time {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The machine

fn print_machine(pg_bin: &Path, pgbouncer: Option<&Path>, opts: &Options) {
    println!("# Palisade benchmark (issue 8)");
    println!();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("machine:    {cpus} CPUs (nproc), {}", cpu_model());
    println!(
        "            {} memory, Linux {}, load average at start: {}",
        mem_total(),
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".to_owned()),
        load_average()
    );
    println!(
        "PostgreSQL: {} ({})",
        command_line(&pg_bin.join("postgres"), &["--version"]),
        pg_bin.display()
    );
    println!(
        "pgbench:    {}",
        command_line(&pg_bin.join("pgbench"), &["--version"])
    );
    match pgbouncer {
        Some(path) => println!(
            "pgbouncer:  {} ({})",
            command_line(path, &["--version"]),
            path.display()
        ),
        None => println!("pgbouncer:  not installed (its column is skipped)"),
    }
    println!("palisade:   {}", git_revision());
    println!(
        "settings:   --rounds {} --seconds {} --scale {} --connections {}; sections:{}{}{}{}",
        opts.rounds,
        opts.seconds,
        opts.scale,
        opts.connections,
        if opts.pgbench { " pgbench" } else { "" },
        if opts.rpc { " rpc" } else { "" },
        if opts.decision { " decision" } else { "" },
        if opts.memory { " memory" } else { "" },
    );
    if let Some(n) = opts.agent_threads {
        println!("agent:      worker_threads = {n}");
    }
    if opts.agent_no_audit {
        println!(
            "agent:      audit.disabled = true (a diagnostic run: statements are NOT audited)"
        );
    }
    if !opts.cases.is_empty() {
        println!("cases:      {}", opts.cases.join(", "));
    }
    println!(
        "note:       everything (PostgreSQL, pgbench, agent, PDP, pgbouncer) runs on these same \
         CPUs; proxy CPU competes with the database's"
    );
}

fn cpu_model() -> String {
    let Some(info) = read_trimmed("/proc/cpuinfo") else {
        return "CPU model unknown".to_owned();
    };
    for key in ["model name", "Hardware", "cpu model", "Processor"] {
        if let Some(model) = info.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        }) {
            return model;
        }
    }
    "CPU model unknown".to_owned()
}

fn mem_total() -> String {
    read_trimmed("/proc/meminfo")
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "? GiB".to_owned())
}

fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!(
                "git {rev}{}",
                if dirty {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )
        }
        None => "git revision unknown".to_owned(),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The first line a program prints, or a note that it could not run.
fn command_line(program: &Path, args: &[&str]) -> String {
    match std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        Err(e) => format!("cannot run {}: {e}", program.display()),
    }
}

fn find_pgbouncer() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("pgbouncer");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let fixed = PathBuf::from(PGBOUNCER_PATH);
    fixed.is_file().then_some(fixed)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        command_line(Path::new("getconf"), &["CLK_TCK"])
            .parse()
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime field 14, stime field 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Resident memory of a process (`VmRSS`), in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An unprivileged account for servers that refuse root (pgbouncer), when
/// this process is root: `palisade-test` (which the throwaway PostgreSQL also
/// runs as), else `nobody`.
fn unprivileged_account() -> Result<Option<(u32, u32)>> {
    let root = read_trimmed("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false);
    if !root {
        return Ok(None);
    }
    for name in ["palisade-test", "nobody"] {
        let out = std::process::Command::new("getent")
            .args(["passwd", name])
            .stderr(Stdio::null())
            .output()
            .context("running getent passwd")?;
        if !out.status.success() {
            continue;
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = line.trim().split(':').collect();
        if let (Some(uid), Some(gid)) = (fields.get(2), fields.get(3)) {
            return Ok(Some((
                uid.parse().context("uid from getent")?,
                gid.parse().context("gid from getent")?,
            )));
        }
    }
    bail!("running as root, and neither palisade-test nor nobody exists to run pgbouncer as")
}

// ---------------------------------------------------------------------------------------------
// The agent as its own process

/// A release `palisade-agent` process serving target `staging` (database
/// `bench`).
struct AgentChild {
    addr: SocketAddr,
    pid: u32,
    log: PathBuf,
    child: tokio::process::Child,
}

impl AgentChild {
    async fn start(
        fixture: &Fixture,
        pdp_url: &str,
        pg: &TestPostgres,
        tag: &str,
        opts: &Options,
    ) -> Result<Self> {
        let agent = fixture
            .certs
            .agents
            .first()
            .context("the fixture has no agent certificate")?;
        let dir = fixture.dir.path().join(format!("agent-{tag}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let password_file = dir.join("bench.password");
        std::fs::write(&password_file, pg.superuser_password())?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
        let addr: SocketAddr = ([127, 0, 0, 1], integration::ports::free_port()?).into();
        let config_path = dir.join("agent.toml");
        let threads = opts
            .agent_threads
            .map(|n| format!("worker_threads = {n}\n"))
            .unwrap_or_default();
        let toml = format!(
            r#"agent_id = "{name}"
{threads}

[listen]
addr = "{addr}"
tls_cert = "{tls_cert}"
tls_key = "{tls_key}"

[pdp]
endpoints = ["{pdp_url}"]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
server_name = "localhost"

[targets.{AGENT_TARGET}]
host = "{pg_host}"
port = {pg_port}
database = "{BENCH_DB}"
user = "{pg_user}"
password_file = "{password_file}"

[audit]
disabled = {no_audit}

[audit.spool]
dir = "{spool}"
"#,
            no_audit = opts.agent_no_audit,
            name = agent.name,
            tls_cert = agent.listener.cert.display(),
            tls_key = agent.listener.key.display(),
            ca = fixture.certs.ca.cert.display(),
            cert = agent.pdp_client.cert.display(),
            key = agent.pdp_client.key.display(),
            pg_host = pg.host(),
            pg_port = pg.port(),
            pg_user = pg.superuser(),
            password_file = password_file.display(),
            spool = dir.join("spool").display(),
        );
        std::fs::write(&config_path, toml)?;
        let binary = bin_dir()?.join("palisade-agent");
        if !binary.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p palisade-agent` \
                 (scripts/bench.sh does)",
                binary.display()
            );
        }
        let log = dir.join("agent.log");
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(&binary)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the agent exited at once")?;
        if let Err(e) = integration::ports::wait_for_port(addr, Duration::from_secs(30)).await {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(e.context(format!("the agent did not start; its log:\n{text}")));
        }
        Ok(Self {
            addr,
            pid,
            log,
            child,
        })
    }

    /// Lines the agent logged (warnings and errors), for the report.
    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(strip_ansi)
            .collect()
    }

    async fn stop(mut self) -> Vec<String> {
        let _killed = self.child.kill().await;
        self.log_lines()
    }
}

/// A log line without terminal colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn report_agent_log(lines: &[String]) {
    if lines.is_empty() {
        println!("agent log: nothing at level warn or above");
    } else {
        println!(
            "agent log: {} lines at level warn or above; the last ones:",
            lines.len()
        );
        for line in lines.iter().rev().take(5).rev() {
            println!("  {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pgbouncer

struct Pgbouncer {
    port: u16,
    pid: u32,
    // Dropped in this order: the process is killed, then its files go.
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Pgbouncer {
    /// Starts pgbouncer; clients connect to it over TLS with `tls` (the
    /// certificate and key files the agent's listener uses), as they do to
    /// the agent, so both proxies pay the same transport.
    async fn start(program: &Path, pg: &TestPostgres, tls: (&Path, &Path)) -> Result<Self> {
        let account = unprivileged_account()?;
        let dir = tempfile::Builder::new()
            .prefix("palisade-pgbouncer-")
            .tempdir()?;
        let write = |name: &str, text: &str, mode: u32| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = account {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
            Ok(path)
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let auth_file = write(
            "userlist.txt",
            &format!(
                "\"{}\" \"{}\"\n",
                pg.superuser(),
                pg.superuser_password().replace('"', "\"\"")
            ),
            0o600,
        )?;
        let cert = write("client.crt", &std::fs::read_to_string(tls.0)?, 0o600)?;
        let key = write("client.key", &std::fs::read_to_string(tls.1)?, 0o600)?;
        let port = integration::ports::free_port()?;
        let log = dir.path().join("pgbouncer.log");
        let ini = write(
            "pgbouncer.ini",
            &format!(
                "[databases]\n\
                 {BENCH_DB} = host={host} port={pg_port} dbname={BENCH_DB}\n\
                 \n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {auth}\n\
                 pool_mode = session\n\
                 max_client_conn = 200\n\
                 default_pool_size = 20\n\
                 server_tls_sslmode = disable\n\
                 client_tls_sslmode = require\n\
                 client_tls_cert_file = {cert}\n\
                 client_tls_key_file = {key}\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n\
                 logfile = {log}\n",
                host = pg.host(),
                pg_port = pg.port(),
                auth = auth_file.display(),
                log = log.display(),
                cert = cert.display(),
                key = key.display(),
            ),
            0o600,
        )?;
        let mut command = tokio::process::Command::new(program);
        command
            .arg(&ini)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = account {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("pgbouncer exited at once")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if let Err(e) = integration::ports::wait_for_port(addr, Duration::from_secs(15)).await {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(e.context(format!("pgbouncer did not start; its log:\n{text}")));
        }
        Ok(Self {
            port,
            pid,
            _child: child,
            _dir: dir,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// pgbench

/// Where pgbench connects.
struct Target {
    name: &'static str,
    port: u16,
    user: String,
    dbname: String,
    password: String,
    sslmode: &'static str,
    /// The proxy process whose CPU time is charged to this target.
    proxy_pid: Option<u32>,
}

/// One pgbench configuration.
struct Case {
    name: &'static str,
    title: &'static str,
    args: Vec<String>,
    /// Rows each transaction returns (the streaming case).
    rows_per_tx: Option<u64>,
    /// The TPC-B-like mix writes: vacuum and truncate before each run.
    writes: bool,
    clients: u32,
}

fn cases(script: &Path) -> Vec<Case> {
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (clients, threads) in [(1, 1), (8, 2)] {
        for (mode, name_1, name_8, title_1, title_8) in [
            (
                "simple",
                "select-simple-c1",
                "select-simple-c8",
                "select-only, simple protocol, 1 client",
                "select-only, simple protocol, 8 clients",
            ),
            (
                "extended",
                "select-extended-c1",
                "select-extended-c8",
                "select-only, extended protocol, 1 client",
                "select-only, extended protocol, 8 clients",
            ),
            (
                "prepared",
                "select-prepared-c1",
                "select-prepared-c8",
                "select-only, prepared statements, 1 client",
                "select-only, prepared statements, 8 clients",
            ),
        ] {
            let (name, title) = if clients == 1 {
                (name_1, title_1)
            } else {
                (name_8, title_8)
            };
            out.push(Case {
                name,
                title,
                args: args(&[
                    "-n",
                    "-S",
                    "-M",
                    mode,
                    "-c",
                    &clients.to_string(),
                    "-j",
                    &threads.to_string(),
                ]),
                rows_per_tx: None,
                writes: false,
                clients,
            });
        }
    }
    out.push(Case {
        name: "tpcb-c8",
        title: "TPC-B-like mix (pgbench default script), simple protocol, 8 clients",
        args: args(&["-n", "-c", "8", "-j", "2"]),
        rows_per_tx: None,
        writes: true,
        clients: 8,
    });
    out.push(Case {
        name: "rows100k-c1",
        title: "100,000-row result (SELECT * FROM pgbench_accounts LIMIT 100000), 1 client",
        args: vec![
            "-n".to_owned(),
            "-f".to_owned(),
            script.display().to_string(),
            "-c".to_owned(),
            "1".to_owned(),
            "-j".to_owned(),
            "1".to_owned(),
        ],
        rows_per_tx: Some(STREAM_ROWS),
        writes: false,
        clients: 1,
    });
    out
}

/// What one pgbench run measured.
#[derive(Debug, Clone)]
struct Run {
    tps: f64,
    latency_ms: f64,
    failed: u64,
    /// How long the proxy and the PDP stayed busy after pgbench ended.
    settled: Duration,
    proxy_cpu_us_per_tx: Option<f64>,
    pdp_cpu_us_per_tx: Option<f64>,
}

fn parse_pgbench(stdout: &str) -> Result<(f64, f64, u64, u64)> {
    let number_after = |prefix: &str| -> Option<&str> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
    };
    let tps: f64 = stdout
        .lines()
        .filter(|l| l.contains("without initial connection time"))
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no \"tps = ... (without initial connection time)\" line")?;
    let latency_ms: f64 = number_after("latency average = ")
        .and_then(|v| v.parse().ok())
        .context("no \"latency average = ... ms\" line")?;
    let transactions: u64 = number_after("number of transactions actually processed: ")
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let failed: u64 = number_after("number of failed transactions: ")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((tps, latency_ms, transactions, failed))
}

async fn run_pgbench(pg_bin: &Path, target: &Target, args: &[String], seconds: u64) -> Result<Run> {
    let mut command = tokio::process::Command::new(pg_bin.join("pgbench"));
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGOPTIONS",
        "PGSSLMODE",
    ] {
        command.env_remove(var);
    }
    command
        .args(args)
        .arg("-T")
        .arg(seconds.to_string())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", target.port.to_string())
        .env("PGUSER", &target.user)
        .env("PGDATABASE", &target.dbname)
        .env("PGPASSWORD", &target.password)
        .env("PGSSLMODE", target.sslmode)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let proxy_before = target.proxy_pid.and_then(cpu_seconds);
    let pdp_before = cpu_seconds(std::process::id());
    let output = tokio::time::timeout(Duration::from_secs(seconds + 120), command.output())
        .await
        .context("pgbench did not finish in time")?
        .context("running pgbench")?;
    // The agent streams audit events to the PDP after the fact: wait until
    // both are idle again, so their work is charged to this run and does not
    // disturb the next one.
    let mut busy = vec![std::process::id()];
    busy.extend(target.proxy_pid);
    let settled = settle(&busy).await;
    let proxy_after = target.proxy_pid.and_then(cpu_seconds);
    let pdp_after = cpu_seconds(std::process::id());
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        bail!(
            "pgbench failed ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let (tps, latency_ms, transactions, failed) = parse_pgbench(&stdout)?;
    let per_tx = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if transactions > 0 => Some((a - b) * 1e6 / transactions as f64),
        _ => None,
    };
    Ok(Run {
        tps,
        latency_ms,
        failed,
        settled,
        proxy_cpu_us_per_tx: per_tx(proxy_before, proxy_after),
        // The PDP shares this process with nothing busy while pgbench runs.
        pdp_cpu_us_per_tx: if target.name == "agent" {
            per_tx(pdp_before, pdp_after)
        } else {
            None
        },
    })
}

/// Waits (at most 30 s) until the processes `pids` together use less than
/// one clock tick of CPU in 200 ms; returns how long that took.
async fn settle(pids: &[u32]) -> Duration {
    let started = Instant::now();
    let total = || pids.iter().filter_map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let mut last = total();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = total();
        if now - last <= 0.011 || started.elapsed() >= Duration::from_secs(30) {
            return started.elapsed();
        }
        last = now;
    }
}

/// A duration in seconds, said roughly.
fn about(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values.get(mid).copied()
    } else {
        Some((values.get(mid - 1)? + values.get(mid)?) / 2.0)
    }
}

/// Medians across rounds for one (case, target).
#[derive(Debug, Clone, Default)]
struct Medians {
    tps: Option<f64>,
    latency_ms: Option<f64>,
    proxy_cpu_us: Option<f64>,
    pdp_cpu_us: Option<f64>,
    busy_after_s: Option<f64>,
    rounds_tps: Vec<f64>,
    failed_tx: u64,
    errors: Vec<String>,
}

fn medians(runs: &[Result<Run, String>]) -> Medians {
    let ok: Vec<&Run> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    let pick = |f: &dyn Fn(&Run) -> Option<f64>| {
        let mut v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
        median(&mut v)
    };
    Medians {
        tps: pick(&|r| Some(r.tps)),
        latency_ms: pick(&|r| Some(r.latency_ms)),
        proxy_cpu_us: pick(&|r| r.proxy_cpu_us_per_tx),
        pdp_cpu_us: pick(&|r| r.pdp_cpu_us_per_tx),
        busy_after_s: pick(&|r| Some(r.settled.as_secs_f64())),
        rounds_tps: ok.iter().map(|r| r.tps).collect(),
        failed_tx: ok.iter().map(|r| r.failed).sum(),
        errors: runs
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn round_to(value: Option<f64>, decimals: i32) -> Option<f64> {
    let scale = 10f64.powi(decimals);
    value.map(|v| (v * scale).round() / scale)
}

async fn pgbench_section(
    opts: &Options,
    fixture: &Fixture,
    pdp: &RunningPdp,
    pg: &TestPostgres,
    pgbouncer_program: Option<&Path>,
    token: &str,
    summary: &mut Summary,
) -> Result<()> {
    println!();
    println!("## pgbench");
    let pg_bin = pg.bin_dir().to_path_buf();
    let init_started = Instant::now();
    let mut init = tokio::process::Command::new(pg_bin.join("pgbench"));
    let init = init
        .args(["-i", "-q", "-s", &opts.scale.to_string()])
        .env_remove("PGSERVICE")
        .env("PGHOST", pg.host())
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", pg.superuser())
        .env("PGDATABASE", BENCH_DB)
        .env("PGPASSWORD", pg.superuser_password())
        .env("PGSSLMODE", "disable")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench -i")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        );
    }
    let size = pg
        .psql(
            BENCH_DB,
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
        )
        .await?;
    println!(
        "data: pgbench -i -s {} directly on PostgreSQL ({} accounts, database {}) in {:.1} s",
        opts.scale,
        u64::from(opts.scale) * 100_000,
        size.trim(),
        init_started.elapsed().as_secs_f64()
    );

    let agent = AgentChild::start(fixture, &pdp.url(), pg, "pgbench", opts).await?;
    println!(
        "agent: release palisade-agent process (pid {}) on {}; clients use TLS (sslmode=require) \
         and a dba token as password; decisions from the PDP over mutual TLS, cached by the \
         agent (decision_cache_ttl 60s); every statement audited (spooled, streamed to the PDP's \
         embedded store); upstream plain TCP with SCRAM",
        agent.pid, agent.addr
    );
    let bouncer = match pgbouncer_program {
        Some(program) => match Pgbouncer::start(program, pg, listener_tls(fixture)?).await {
            Ok(bouncer) => {
                println!(
                    "pgbouncer: pid {} on 127.0.0.1:{}, session mode, default_pool_size 20, \
                     auth scram-sha-256; clients use TLS (sslmode=require, the agent's certificate), \
                     upstream plain TCP",
                    bouncer.pid, bouncer.port
                );
                Some(bouncer)
            }
            Err(e) => {
                println!("pgbouncer: FAILED TO START, skipped: {e:#}");
                None
            }
        },
        None => {
            println!(
                "pgbouncer: NOT INSTALLED ({PGBOUNCER_PATH} missing): skipped; \
                 scripts/ensure-deps.sh --with-pgbouncer installs it"
            );
            None
        }
    };
    println!("direct: plain TCP with SCRAM to PostgreSQL");

    let mut targets = vec![
        Target {
            name: "direct",
            port: pg.port(),
            user: pg.superuser().to_owned(),
            dbname: BENCH_DB.to_owned(),
            password: pg.superuser_password().to_owned(),
            sslmode: "disable",
            proxy_pid: None,
        },
        Target {
            name: "agent",
            port: agent.addr.port(),
            user: "bench".to_owned(),
            dbname: AGENT_TARGET.to_owned(),
            password: token.to_owned(),
            sslmode: "require",
            proxy_pid: Some(agent.pid),
        },
    ];
    if let Some(b) = &bouncer {
        targets.push(Target {
            name: "pgbouncer",
            port: b.port,
            user: pg.superuser().to_owned(),
            dbname: BENCH_DB.to_owned(),
            password: pg.superuser_password().to_owned(),
            sslmode: "require",
            proxy_pid: Some(b.pid),
        });
    }

    let scripts = tempfile::tempdir()?;
    let script = scripts.path().join("rows100k.sql");
    std::fs::write(
        &script,
        format!("SELECT * FROM pgbench_accounts LIMIT {STREAM_ROWS};\n"),
    )?;
    let mut cases = cases(&script);
    if !opts.cases.is_empty() {
        let known: Vec<&str> = cases.iter().map(|c| c.name).collect();
        if let Some(unknown) = opts.cases.iter().find(|c| !known.contains(&c.as_str())) {
            bail!(
                "--cases: unknown case {unknown:?}; known: {}",
                known.join(", ")
            );
        }
        cases.retain(|c| opts.cases.iter().any(|n| n == c.name));
    }
    let total = opts.rounds * cases.len() * targets.len();
    println!(
        "plan: {} cases x {} targets x {} rounds = {total} runs of {} s, interleaved (round, \
         case, then {}), plus a {} s warm-up per target; pgbench -n (no vacuum); before each \
         TPC-B run: VACUUM pgbench_branches, pgbench_tellers; TRUNCATE pgbench_history \
         (directly); about {}",
        cases.len(),
        targets.len(),
        opts.rounds,
        opts.seconds,
        targets
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", "),
        opts.seconds.min(3),
        about(
            total as f64 * (opts.seconds as f64 + 1.5)
                + targets.len() as f64 * (opts.seconds.min(3) as f64 + 1.5)
        )
    );

    for target in &targets {
        let warm = run_pgbench(
            &pg_bin,
            target,
            &[
                "-n".to_owned(),
                "-S".to_owned(),
                "-c".to_owned(),
                "8".to_owned(),
                "-j".to_owned(),
                "2".to_owned(),
            ],
            opts.seconds.min(3),
        )
        .await;
        match warm {
            Ok(r) => eprintln!("warm-up {}: {:.0} tps", target.name, r.tps),
            Err(e) => eprintln!("warm-up {}: {e:#}", target.name),
        }
    }

    let mut results: BTreeMap<(usize, usize), Vec<Result<Run, String>>> = BTreeMap::new();
    let mut done = 0;
    for round in 0..opts.rounds {
        for (ci, case) in cases.iter().enumerate() {
            for (ti, target) in targets.iter().enumerate() {
                if case.writes {
                    pg.psql(
                        BENCH_DB,
                        "VACUUM pgbench_branches, pgbench_tellers;\nTRUNCATE pgbench_history;\n",
                    )
                    .await?;
                }
                let run = run_pgbench(&pg_bin, target, &case.args, opts.seconds)
                    .await
                    .map_err(|e| format!("{e:#}"));
                done += 1;
                match &run {
                    Ok(r) => eprintln!(
                        "[{done}/{total}] round {} {} {}: {:.1} tps, {:.3} ms (idle again \
                         {:.1} s after pgbench ended)",
                        round + 1,
                        case.name,
                        target.name,
                        r.tps,
                        r.latency_ms,
                        r.settled.as_secs_f64()
                    ),
                    Err(e) => eprintln!(
                        "[{done}/{total}] round {} {} {}: FAILED {e}",
                        round + 1,
                        case.name,
                        target.name
                    ),
                }
                results.entry((ci, ti)).or_default().push(run);
            }
        }
    }

    println!();
    println!(
        "Each case: median over {} round(s) of {} s. TPS = pgbench \"tps (without initial \
         connection time)\"; latency = pgbench \"latency average\"; proxy CPU = user+system CPU \
         of the agent or pgbouncer process per transaction; PDP CPU = this process (the \
         in-process PDP) per transaction during agent runs; both counted until they are idle \
         again; busy after = how long after pgbench ended that took (the agent streams audit \
         events to the PDP after the fact; 0.2 s is the minimum, 30 s the cap).",
        opts.rounds, opts.seconds
    );
    for (ci, case) in cases.iter().enumerate() {
        let per_target: Vec<(&Target, Medians)> = targets
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                (
                    t,
                    medians(results.get(&(ci, ti)).map_or(&[][..], Vec::as_slice)),
                )
            })
            .collect();
        let summarized = report_case(case, &per_target, opts);
        summary.cases.insert(case.name, summarized);
    }
    let rss = rss_bytes(agent.pid);
    println!();
    println!(
        "agent resident memory after the pgbench runs: {}",
        rss.map_or_else(
            || "?".to_owned(),
            |b| format!("{:.1} MiB", b as f64 / 1048576.0)
        )
    );
    report_agent_log(&agent.stop().await);
    Ok(())
}

/// Prints one case's table and JSON line; returns what the summary needs.
fn report_case(case: &Case, per_target: &[(&Target, Medians)], opts: &Options) -> CaseSummary {
    let get = |name: &str| {
        per_target
            .iter()
            .find(|(t, _)| t.name == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    };
    let (direct, agent_m, bouncer_m) = (get("direct"), get("agent"), get("pgbouncer"));
    println!();
    println!(
        "### {} — {}: pgbench {} -T {}",
        case.name,
        case.title,
        case.args
            .iter()
            .map(|a| if a.ends_with("rows100k.sql") {
                "rows100k.sql".to_owned()
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
            .join(" "),
        opts.seconds
    );
    let mut table = String::new();
    let rows_col = case.rows_per_tx.is_some();
    let _ = writeln!(
        table,
        "  {:<10} {:>10} {:>11}{} {:>13} {:>11} {:>11}   TPS per round",
        "target",
        "TPS",
        "latency ms",
        if rows_col {
            format!(" {:>12}", "rows/s")
        } else {
            String::new()
        },
        "proxy CPU/tx",
        "PDP CPU/tx",
        "busy after"
    );
    for (target, m) in per_target {
        let rows = if let Some(rows) = case.rows_per_tx {
            format!(" {:>12}", fmt_opt(m.tps.map(|t| t * rows as f64), 0))
        } else {
            String::new()
        };
        let _ = writeln!(
            table,
            "  {:<10} {:>10} {:>11}{rows} {:>13} {:>11} {:>11}   {}{}",
            target.name,
            fmt_opt(m.tps, 1),
            fmt_opt(m.latency_ms, 3),
            m.proxy_cpu_us
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} µs")),
            m.pdp_cpu_us
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} µs")),
            m.busy_after_s
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} s")),
            m.rounds_tps
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            if m.failed_tx > 0 {
                format!("  ({} failed transactions)", m.failed_tx)
            } else {
                String::new()
            }
        );
        for e in &m.errors {
            let _ = writeln!(table, "    {} run failed: {e}", target.name);
        }
    }
    print!("{table}");
    let over_direct = ratio(agent_m.tps, direct.tps);
    let over_bouncer = ratio(agent_m.tps, bouncer_m.tps);
    let added_agent = diff(agent_m.latency_ms, direct.latency_ms);
    let added_bouncer = diff(bouncer_m.latency_ms, direct.latency_ms);
    println!(
        "  TPS ratios: agent/direct {}, agent/pgbouncer {}, pgbouncer/direct {}",
        fmt_opt(over_direct, 3),
        fmt_opt(over_bouncer, 3),
        fmt_opt(ratio(bouncer_m.tps, direct.tps), 3)
    );
    println!(
        "  added mean latency per {}{}: agent {} ms, pgbouncer {} ms",
        if case.rows_per_tx.is_some() {
            "100k-row query"
        } else if case.writes {
            "transaction (5 statements)"
        } else {
            "query"
        },
        if case.clients == 1 {
            " at 1 client"
        } else {
            " at 8 clients (queueing included)"
        },
        fmt_opt(added_agent, 3),
        fmt_opt(added_bouncer, 3)
    );
    let mut line = json!({
        "case": case.name,
        "clients": case.clients,
        "seconds": opts.seconds,
        "rounds": opts.rounds,
        "direct_tps": round_to(direct.tps, 1),
        "agent_tps": round_to(agent_m.tps, 1),
        "pgbouncer_tps": round_to(bouncer_m.tps, 1),
        "agent_over_direct": round_to(over_direct, 3),
        "agent_over_pgbouncer": round_to(over_bouncer, 3),
        "pgbouncer_over_direct": round_to(ratio(bouncer_m.tps, direct.tps), 3),
        "direct_latency_ms": round_to(direct.latency_ms, 3),
        "agent_latency_ms": round_to(agent_m.latency_ms, 3),
        "pgbouncer_latency_ms": round_to(bouncer_m.latency_ms, 3),
        "agent_added_latency_ms": round_to(added_agent, 3),
        "pgbouncer_added_latency_ms": round_to(added_bouncer, 3),
        "agent_cpu_us_per_tx": round_to(agent_m.proxy_cpu_us, 1),
        "pgbouncer_cpu_us_per_tx": round_to(bouncer_m.proxy_cpu_us, 1),
        "pdp_cpu_us_per_tx": round_to(agent_m.pdp_cpu_us, 1),
        "agent_busy_after_s": round_to(agent_m.busy_after_s, 1),
    });
    if let (Some(rows), Some(obj)) = (case.rows_per_tx, line.as_object_mut()) {
        for (key, m) in [
            ("direct_rows_per_s", &direct),
            ("agent_rows_per_s", &agent_m),
            ("pgbouncer_rows_per_s", &bouncer_m),
        ] {
            obj.insert(
                key.to_owned(),
                json!(round_to(m.tps.map(|t| t * rows as f64), 0)),
            );
        }
    }
    println!("{line}");
    CaseSummary {
        over_direct,
        over_bouncer,
        added_agent,
        added_bouncer,
    }
}

// ---------------------------------------------------------------------------------------------
// Decide RPC

struct RpcResult {
    decisions: u64,
    errors: u64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
}

async fn decide_load(
    client: &DecisionServiceClient<Channel>,
    request: &pb::DecideRequest,
    callers: usize,
    duration: Duration,
) -> Result<RpcResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let mut client = client.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<f64> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.decide(request.clone()).await {
                    Ok(_) => latencies.push(t.elapsed().as_secs_f64() * 1e6),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.context("a Decide caller task failed")?;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * all.len() as f64).ceil() as usize;
        all.get(rank.saturating_sub(1).min(all.len() - 1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let decisions = all.len() as u64;
    Ok(RpcResult {
        decisions,
        errors,
        per_second: decisions as f64 / elapsed,
        p50_us: percentile(50.0),
        p99_us: percentile(99.0),
        mean_us: if all.is_empty() {
            f64::NAN
        } else {
            all.iter().sum::<f64>() / all.len() as f64
        },
    })
}

// ---------------------------------------------------------------------------------------------
// In-process decision

/// Decisions timed per statement and way (as `cargo bench -p palisade-pdp
/// --bench decide`).
const DECISION_ROUNDS: usize = 5_000;

/// The in-process decision latency with the example policies (see
/// `palisade_pdp::engine::latency`), on a blocking thread of this process.
async fn decision_section(summary: &mut Summary) -> Result<()> {
    use palisade_pdp::engine::latency::{self, STATEMENTS};

    println!();
    println!("## In-process decision");
    println!(
        "what: Scope::decide_statement in this process with the example policies, principal of \
         group ci-generated-code on target prod, {} statements x {DECISION_ROUNDS} decisions \
         each way; \"Cedar\" evaluates every time (a statement's first decision in a scope), \
         \"decided before\" answers from the scope's memory of decided attributes (what a \
         repeated statement costs; the agent also caches per session and asks nothing)",
        STATEMENTS.len()
    );
    let snapshot = palisade_pdp::policy::load_dir(&integration::stack::example_policies())
        .map_err(|problems| anyhow::anyhow!("the example policies do not load: {problems:?}"))?;
    let measured = tokio::task::spawn_blocking(move || {
        latency::measure(std::sync::Arc::new(snapshot), DECISION_ROUNDS)
    })
    .await
    .context("the decision benchmark stopped")??;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  {:<86} {:>9} {:>9}",
        "statement (Cedar | decided before)", "p50 µs", "p99 µs"
    );
    for ((sql, cedar), cached) in STATEMENTS
        .iter()
        .zip(&measured.uncached.per_statement)
        .zip(&measured.cached.per_statement)
    {
        println!(
            "  {:<86} {:>9.1} {:>9.1}\n  {:<86} {:>9.1} {:>9.1}",
            sql,
            micros(cedar.p50),
            micros(cedar.p99),
            "  decided before",
            micros(cached.p50),
            micros(cached.p99)
        );
    }
    for (case, label, m) in [
        (
            "decision-cedar",
            "all statements, Cedar",
            &measured.uncached,
        ),
        (
            "decision-decided-before",
            "all statements, decided before",
            &measured.cached,
        ),
    ] {
        println!(
            "  {:<86} {:>9.1} {:>9.1}",
            label,
            micros(m.all.p50),
            micros(m.all.p99)
        );
        println!(
            "{}",
            json!({
                "case": case,
                "statements": STATEMENTS.len(),
                "decisions_per_statement": DECISION_ROUNDS,
                "p50_us": round_to(Some(micros(m.all.p50)), 2),
                "p99_us": round_to(Some(micros(m.all.p99)), 2),
            })
        );
    }
    summary.decision_p50_us = Some([
        micros(measured.cached.all.p50),
        micros(measured.uncached.all.p50),
    ]);
    Ok(())
}

async fn rpc_section(
    opts: &Options,
    fixture: &Fixture,
    pdp: &RunningPdp,
    token: &str,
    summary: &mut Summary,
) -> Result<()> {
    println!();
    println!("## Decide RPC");
    let mut client = pdp.decision_client(fixture.agent_tls()?).await?;
    let opened = client
        .open_session(pb::OpenSessionRequest {
            token: token.to_owned(),
            target: AGENT_TARGET.to_owned(),
            client: Some(pb::ClientInfo {
                address: "127.0.0.1:1".to_owned(),
                application_name: "palisade-bench".to_owned(),
                database_user: "bench".to_owned(),
                tls: true,
                startup_parameters: Default::default(),
                protocol_version: "3.0".to_owned(),
            }),
            grantable_roles: Vec::new(),
            resume_session_id: String::new(),
        })
        .await
        .context("OpenSession")?
        .into_inner();
    let session_id = match opened.outcome {
        Some(pb::open_session_response::Outcome::Granted(grant)) => grant.session_id,
        Some(pb::open_session_response::Outcome::Refused(refusal)) => {
            bail!("OpenSession refused: {}", refusal.message)
        }
        None => bail!("OpenSession answered nothing"),
    };
    let analyzed = palisade_sql::analyze(RPC_SQL, &["public"])
        .map_err(|e| anyhow::anyhow!("analysing {RPC_SQL:?}: {e}"))?;
    let attributes = analyzed
        .first()
        .map(|s| palisade_proto::convert::attributes_to_pb(&s.attributes))
        .context("the benchmark statement analysed to nothing")?;
    let request = |input: pb::statement_input::Input| pb::DecideRequest {
        subject: Some(pb::decide_request::Subject::SessionId(session_id.clone())),
        target: String::new(),
        statements: vec![pb::StatementInput { input: Some(input) }],
    };
    let by_attributes = request(pb::statement_input::Input::Attributes(attributes));
    let by_sql = request(pb::statement_input::Input::Sql(RPC_SQL.to_owned()));
    let check = client
        .decide(by_attributes.clone())
        .await
        .context("Decide")?
        .into_inner();
    let effect = check
        .decisions
        .first()
        .map(|d| format!("{:?}", d.effect()))
        .unwrap_or_else(|| "no decision".to_owned());
    println!(
        "what: Decide calls, one statement each ({RPC_SQL:?}), on one session (dba, target \
         {AGENT_TARGET}) over one HTTP/2 connection with mutual TLS to the in-process PDP on \
         loopback; each caller waits for its answer before the next call; answer: {effect}; \
         the client and the PDP share this process's runtime and these CPUs. \"attributes\" = \
         the statement parsed here (palisade_sql::analyze) and sent as attributes, as the agent \
         does; \"raw SQL\" = the PDP parses it. {} s per run, after 2,000 warm-up calls.",
        opts.seconds
    );
    for _ in 0..2000 {
        client
            .decide(by_attributes.clone())
            .await
            .context("Decide warm-up")?;
    }
    println!(
        "  {:<12} {:>7} {:>13} {:>9} {:>9} {:>9} {:>7}",
        "input", "callers", "decisions/s", "p50 µs", "p99 µs", "mean µs", "errors"
    );
    for (label, req) in [("attributes", &by_attributes), ("raw SQL", &by_sql)] {
        for callers in [1usize, 16] {
            let r = decide_load(&client, req, callers, Duration::from_secs(opts.seconds)).await?;
            println!(
                "  {:<12} {:>7} {:>13.0} {:>9.0} {:>9.0} {:>9.0} {:>7}",
                label, callers, r.per_second, r.p50_us, r.p99_us, r.mean_us, r.errors
            );
            let case = format!(
                "decide-{}-{callers}",
                if label == "raw SQL" {
                    "sql"
                } else {
                    "attributes"
                }
            );
            println!(
                "{}",
                json!({
                    "case": case,
                    "callers": callers,
                    "seconds": opts.seconds,
                    "decisions": r.decisions,
                    "errors": r.errors,
                    "decisions_per_s": r.per_second.round(),
                    "p50_us": (r.p50_us * 10.0).round() / 10.0,
                    "p99_us": (r.p99_us * 10.0).round() / 10.0,
                    "mean_us": (r.mean_us * 10.0).round() / 10.0,
                })
            );
            if label == "attributes" && callers == 16 {
                summary.rpc_16 = Some(r.per_second);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Memory per idle connection

async fn memory_section(
    opts: &Options,
    fixture: &Fixture,
    pdp: &RunningPdp,
    pg: &TestPostgres,
    token: &str,
    summary: &mut Summary,
) -> Result<()> {
    println!();
    println!("## Memory per idle client connection");
    let agent = AgentChild::start(fixture, &pdp.url(), pg, "memory", opts).await?;
    let tls = integration::clients::tls_connector(&fixture.certs.ca.cert)?;
    let conninfo = format!(
        "host=localhost port={} dbname={AGENT_TARGET} user=bench password={token} \
         sslmode=require connect_timeout=30",
        agent.addr.port()
    );
    // Warm the fresh process (first TLS handshake, PDP channel, caches), so
    // the baseline is an agent that has served a client.
    {
        let (client, connection) = tokio_postgres::connect(&conninfo, tls.clone())
            .await
            .context("connecting to the agent")?;
        let task = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        drop(client);
        let _closed = task.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(agent.pid).context("reading the agent's VmRSS")?;
    let mut clients = Vec::with_capacity(opts.connections);
    let mut failures = 0usize;
    let mut first_error = None;
    let connect_started = Instant::now();
    let mut remaining = opts.connections;
    while remaining > 0 {
        let batch = remaining.min(CONNECT_BATCH);
        remaining -= batch;
        let attempts = (0..batch).map(|_| {
            let tls = tls.clone();
            let conninfo = conninfo.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&conninfo, tls).await?;
                let task = tokio::spawn(connection);
                Ok::<_, tokio_postgres::Error>((client, task))
            }
        });
        for outcome in futures::future::join_all(attempts).await {
            match outcome {
                Ok(pair) => clients.push(pair),
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_open = rss_bytes(agent.pid).context("reading the agent's VmRSS")?;
    for chunk in clients.chunks(CONNECT_BATCH) {
        let queries = chunk.iter().map(|(c, _)| c.simple_query("SELECT 1"));
        for outcome in futures::future::join_all(queries).await {
            if let Err(e) = outcome {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_query = rss_bytes(agent.pid).context("reading the agent's VmRSS")?;
    let open = clients.len();
    for (client, task) in clients {
        drop(client);
        let _closed = task.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = rss_bytes(agent.pid);
    let per = |after: u64| {
        if open == 0 {
            f64::NAN
        } else {
            (after as f64 - before as f64) / open as f64
        }
    };
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "what: VmRSS of a fresh agent process (pid {}, release build, already warmed by one \
         connection) before and after opening {} idle client connections (tokio-postgres, TLS, \
         dba token; {CONNECT_BATCH} at a time); each client connection also holds an upstream \
         PostgreSQL connection (SCRAM, plain TCP) and a PDP session",
        agent.pid, opts.connections
    );
    println!(
        "  opened {open} of {} in {connect_secs:.1} s{}",
        opts.connections,
        if failures > 0 {
            format!(
                "; {failures} failed: {}",
                first_error.clone().unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    println!(
        "  RSS before:                        {:>8.1} MiB",
        mib(before)
    );
    println!(
        "  RSS with {open} idle connections:  {:>8.1} MiB   -> {:.1} KiB per connection",
        mib(after_open),
        per(after_open) / 1024.0
    );
    println!(
        "  RSS after one SELECT 1 on each:    {:>8.1} MiB   -> {:.1} KiB per connection",
        mib(after_query),
        per(after_query) / 1024.0
    );
    if let Some(closed) = after_close {
        println!(
            "  RSS after closing them all:        {:>8.1} MiB",
            mib(closed)
        );
    }
    println!(
        "{}",
        json!({
            "case": "idle-connections",
            "connections": open,
            "failed": failures,
            "rss_before_bytes": before,
            "rss_after_open_bytes": after_open,
            "rss_after_query_bytes": after_query,
            "rss_after_close_bytes": after_close,
            "bytes_per_connection": per(after_open).round(),
            "bytes_per_connection_after_query": per(after_query).round(),
        })
    );
    summary.memory_per_conn = Some(per(after_open).max(per(after_query)));
    report_agent_log(&agent.stop().await);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Against issue 8's targets

#[derive(Debug, Clone, Default)]
struct CaseSummary {
    over_direct: Option<f64>,
    over_bouncer: Option<f64>,
    added_agent: Option<f64>,
    added_bouncer: Option<f64>,
}

#[derive(Debug, Default)]
struct Summary {
    cases: BTreeMap<&'static str, CaseSummary>,
    rpc_16: Option<f64>,
    /// p50 of an in-process decision, µs: a statement decided before, and
    /// a Cedar evaluation.
    decision_p50_us: Option<[f64; 2]>,
    memory_per_conn: Option<f64>,
}

impl Summary {
    fn print(&self) {
        let mut lines: Vec<String> = Vec::new();
        let verdict = |met: Option<bool>| match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        for mode in ["simple", "extended", "prepared"] {
            let c8 = self
                .cases
                .get(format!("select-{mode}-c8").as_str())
                .cloned()
                .unwrap_or_default();
            lines.push(format!(
                "agent/pgbouncer TPS >= 1.0, select-only {mode}, 8 clients: {} ({})",
                fmt_opt(c8.over_bouncer, 3),
                verdict(c8.over_bouncer.map(|r| r >= 1.0))
            ));
        }
        for mode in ["simple", "extended", "prepared"] {
            let c1 = self
                .cases
                .get(format!("select-{mode}-c1").as_str())
                .cloned()
                .unwrap_or_default();
            lines.push(format!(
                "added latency at 1 client <= pgbouncer's, select-only {mode}: agent {} ms vs \
                 pgbouncer {} ms ({})",
                fmt_opt(c1.added_agent, 3),
                fmt_opt(c1.added_bouncer, 3),
                verdict(match (c1.added_agent, c1.added_bouncer) {
                    (Some(a), Some(b)) => Some(a <= b),
                    _ => None,
                })
            ));
        }
        let rows = self.cases.get("rows100k-c1").cloned().unwrap_or_default();
        lines.push(format!(
            "100k-row result at >= 0.9x direct throughput: {} ({})",
            fmt_opt(rows.over_direct, 3),
            verdict(rows.over_direct.map(|r| r >= 0.9))
        ));
        lines.push(format!(
            ">= 20,000 Decide RPCs/s with 16 callers (attributes): {} ({})",
            fmt_opt(self.rpc_16, 0),
            verdict(self.rpc_16.map(|r| r >= 20_000.0))
        ));
        lines.push(format!(
            "<= 64 KiB resident per idle client connection: {} KiB ({})",
            fmt_opt(self.memory_per_conn.map(|b| b / 1024.0), 1),
            verdict(self.memory_per_conn.map(|b| b <= 64.0 * 1024.0))
        ));
        let p50s = self
            .decision_p50_us
            .map_or([None, None], |[before, cedar]| [Some(before), Some(cedar)]);
        for (what, p50) in [
            "a statement decided before (the agent's steady state)",
            "a Cedar evaluation (a statement's first time)",
        ]
        .into_iter()
        .zip(p50s)
        {
            lines.push(format!(
                "in-process decision p50 <= 10 µs, {what}: {} µs ({})",
                fmt_opt(p50, 1),
                verdict(p50.map(|p| p <= 10.0))
            ));
        }
        println!();
        println!("## Against issue 8's targets (a report, nothing is asserted)");
        for line in lines {
            println!("  {line}");
        }
    }
}

/// The certificate and key of the agent's client listener.
fn listener_tls(fixture: &Fixture) -> Result<(&Path, &Path)> {
    let agent = fixture
        .certs
        .agents
        .first()
        .context("the fixture has no agent certificate")?;
    Ok((&agent.listener.cert, &agent.listener.key))
}
