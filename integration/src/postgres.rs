//! Throwaway PostgreSQL clusters for tests and the demo.
//!
//! [`TestPostgres::start`] runs `initdb` into a fresh temporary directory and starts a server on
//! a free port of 127.0.0.1 (no other address, no network exposure). The superuser is
//! `postgres` with a random password, and every connection, TCP or unix socket, must
//! authenticate with SCRAM-SHA-256, like a production server would ask the agent to. The
//! server logs every statement (`log_statement = 'all'`, with the application name and user in
//! each line's prefix), so a test can prove from [`TestPostgres::log_contents`] that a statement
//! the gateway blocked never reached the database. Dropping the value stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root (a database server with root's rights would
//! turn any SQL-level compromise into a full machine compromise). CI and the development
//! machines run the tests as root, so when the effective uid is 0 the server side (`initdb`,
//! `pg_ctl`, `postgres`) runs as an unprivileged account: `$PALISADE_PG_OS_USER` when set, else
//! `palisade-test` (created once with `useradd --system` when missing), else `nobody`. The
//! privilege drop is done by the standard library's `Command::uid`/`gid` (which also clears
//! the supplementary groups), so neither `runuser` nor `setpriv` is needed. The cluster's
//! directory is `chown`ed to that account; its parent must be traversable by it (the default
//! temporary directory, `/tmp`, is). Clients (`psql`, tokio-postgres) keep running as the
//! caller.
//!
//! # Binaries
//!
//! [`find_bin_dir`] looks for the server binaries; `scripts/ensure-deps.sh` installs them.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::ports;

/// Name of the database superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// The only address the server listens on.
const HOST: &str = "127.0.0.1";
/// Default unprivileged OS account for the server when the tests run as root.
const DEFAULT_OS_USER: &str = "palisade-test";
/// Environment variable naming another OS account for the server when running as root.
const OS_USER_ENV: &str = "PALISADE_PG_OS_USER";
/// Environment variable naming the directory holding `initdb`, `pg_ctl` and `postgres`.
const BIN_DIR_ENV: &str = "PG_BIN_DIR";
/// How many ports to try when the one picked turns out to be taken.
const START_ATTEMPTS: usize = 5;
/// How long to wait for the server to start and accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the server log quoted in error messages.
const LOG_TAIL_LINES: usize = 40;
/// Longest unix socket path PostgreSQL accepts (`sun_path` minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Environment variables that would change what the PostgreSQL tools connect to or load.
const PG_ENV_TO_CLEAR: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSYSCONFDIR",
];

/// How to set up a [`TestPostgres`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Log every statement (`log_statement = 'all'`). Default `true`.
    pub log_statements: bool,
    /// Serve TLS with a certificate for `127.0.0.1` and `localhost`, issued by a throwaway CA
    /// ([`TestPostgres::tls_ca_cert_pem`]). Plain connections stay allowed. Default `false`.
    pub ssl: bool,
    /// Extra `postgresql.conf` settings, written after (so overriding) the defaults. A value
    /// that is a plain word or number (`on`, `64`, `16MB`, `pg_catalog.english`) or already
    /// starts with a single quote is written as is; any other value is single-quoted.
    pub extra_conf: Vec<(String, String)>,
    /// Keep the cluster in this directory instead of a temporary one, and do not remove it on
    /// drop (the server is still stopped). If the directory already holds a cluster made by a
    /// previous run, it is reused with its data and password (on a new free port). For the demo.
    pub keep_dir: Option<PathBuf>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            log_statements: true,
            ssl: false,
            extra_conf: Vec::new(),
            keep_dir: None,
        }
    }
}

/// An OS account the server side runs as (only when the caller is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// Where the cluster lives: a temporary directory removed on drop, or a kept one.
#[derive(Debug)]
enum ClusterDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl ClusterDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// PEM text and files of the server's TLS setup.
#[derive(Debug, Clone)]
struct TlsFiles {
    ca_cert_pem: String,
    ca_cert_path: PathBuf,
}

/// A running throwaway PostgreSQL server; see the [module documentation](self).
///
/// Layout of its directory: `data/` (the cluster; settings in `data/palisade.conf`),
/// `postgres.log` (server log), `superuser-password`, the unix socket, and with TLS `ca.crt`,
/// `server.crt`, `server.key`.
pub struct TestPostgres {
    // `dir` (removed when dropped, if temporary) is only dropped after `Drop::drop` has
    // stopped the server.
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    password: String,
    run_as: Option<RunAs>,
    tls: Option<TlsFiles>,
    running: AtomicBool,
    dir: ClusterDir,
}

impl fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPostgres")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("bin_dir", &self.bin_dir)
            .field("ssl", &self.tls.is_some())
            .field("running", &self.running.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl TestPostgres {
    /// Starts a fresh cluster with [`PostgresOptions::default`].
    pub async fn start() -> Result<Self> {
        Self::start_with(PostgresOptions::default()).await
    }

    /// Starts a fresh cluster (or reuses [`PostgresOptions::keep_dir`]) and waits until it
    /// accepts connections.
    pub async fn start_with(opts: PostgresOptions) -> Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = run_as().await?;

        let dir = match &opts.keep_dir {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let path = std::path::absolute(path)
                    .with_context(|| format!("resolving {}", path.display()))?;
                ClusterDir::Kept(path)
            }
            None => ClusterDir::Temp(
                tempfile::Builder::new()
                    .prefix("palisade-pg-")
                    .tempdir()
                    .context("creating a temporary directory for PostgreSQL")?,
            ),
        };
        let root = dir.path().to_path_buf();
        set_mode(&root, 0o700)?;
        chown_to(&root, run_as)?;
        let data_dir = root.join("data");
        let password_file = root.join("superuser-password");

        let mut pg = Self {
            bin_dir,
            data_dir,
            port: 0,
            password: String::new(),
            run_as,
            tls: None,
            running: AtomicBool::new(false),
            dir,
        };

        if pg.data_dir.join("PG_VERSION").exists() {
            pg.password = std::fs::read_to_string(&password_file)
                .with_context(|| {
                    format!(
                        "{} holds a cluster but no readable {}; remove the directory",
                        pg.root().display(),
                        password_file.display()
                    )
                })?
                .trim()
                .to_owned();
            // A previous run that was killed may have left its server running.
            let status = pg
                .pg_ctl(&["status", "-D", path_str(&pg.data_dir)?])
                .await?;
            if status.status.success() {
                pg.stop_server("immediate").await?;
            }
        } else {
            pg.password = random_password();
            write_file(&password_file, &pg.password, 0o600, run_as)?;
            pg.initdb(&password_file).await?;
        }

        if opts.ssl {
            pg.tls = Some(pg.write_tls_files()?);
        }

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            pg.port = ports::free_port()?;
            pg.write_conf(&opts)?;
            match pg.start_server().await? {
                StartOutcome::Started => {
                    last_error = None;
                    break;
                }
                StartOutcome::AddressInUse(e) => last_error = Some(e),
            }
        }
        if let Some(e) = last_error {
            return Err(e.context(format!(
                "PostgreSQL could not bind a free port in {START_ATTEMPTS} attempts"
            )));
        }
        pg.wait_ready().await?;
        Ok(pg)
    }

    /// TCP port the server listens on (on 127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host the server listens on: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// Name of the database superuser: `"postgres"`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password (random, stored as a SCRAM-SHA-256 verifier).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A key/value connection string for tokio-postgres (or libpq) that logs in as the
    /// superuser to `db` over TCP. Append `sslmode=require` and the like as needed.
    pub fn connection_string(&self, db: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} password={} dbname={} connect_timeout=10",
            self.port,
            conninfo_quote(&self.password),
            conninfo_quote(db)
        )
    }

    /// Connects to `db` as the superuser without TLS; the connection task is spawned on the
    /// current tokio runtime.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string(db), tokio_postgres::NoTls)
                .await
                .with_context(|| {
                    format!(
                        "connecting to PostgreSQL at {HOST}:{} database {db:?} as {SUPERUSER}",
                        self.port
                    )
                })?;
        tokio::spawn(async move {
            // Errors here are the server going away, which fault tests do on purpose.
            let _closed = connection.await;
        });
        Ok(client)
    }

    /// Runs `sql` (fed on standard input, so it may hold several statements and psql
    /// meta-commands) with the `psql` binary as the superuser on `db`, with
    /// `-X -v ON_ERROR_STOP=1 -At`, and returns its standard output. On failure the error
    /// includes psql's standard error.
    pub async fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let psql = self.bin_dir.join("psql");
        let program = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let conninfo = format!(
            "host={HOST} port={} user={SUPERUSER} dbname={} connect_timeout=10",
            self.port,
            conninfo_quote(db)
        );
        let mut cmd = Command::new(&program);
        clear_pg_env(&mut cmd);
        cmd.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-f",
            "-",
            "-d",
            &conninfo,
        ])
        .env("PGPASSWORD", &self.password)
        .env("PGAPPNAME", "psql")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", program.display()))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("psql's standard input was not captured"))?;
        let input = sql.to_owned();
        let writer = tokio::spawn(async move {
            let written = stdin.write_all(input.as_bytes()).await;
            drop(stdin);
            written
        });
        let output = child.wait_with_output().await.context("waiting for psql")?;
        let written = writer.await.context("joining the psql input writer")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "psql on database {db:?} failed ({}): {}\nSQL: {sql}",
                output.status,
                stderr.trim()
            );
        }
        // psql may finish (and close its input) before reading everything only when it failed,
        // so a write error after a success is a real problem.
        written.context("writing SQL to psql")?;
        Ok(stdout)
    }

    /// Path of the server log (the server's standard error, via `pg_ctl -l`).
    pub fn log_path(&self) -> PathBuf {
        self.root().join("postgres.log")
    }

    /// Everything the server logged so far (invalid UTF-8 is replaced, not an error).
    pub fn log_contents(&self) -> std::io::Result<String> {
        let bytes = std::fs::read(self.log_path())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the cluster, the log, the unix socket and the TLS files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// PEM of the CA that issued the server certificate, when started with
    /// [`PostgresOptions::ssl`].
    pub fn tls_ca_cert_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_cert_pem.as_str())
    }

    /// Path of [`Self::tls_ca_cert_pem`] on disk (for libpq's `sslrootcert`).
    pub fn tls_ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert_path.as_path())
    }

    /// Whether the server is running (as far as this value knows).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops the server (fast shutdown: open sessions are terminated) and starts it again on
    /// the same port, then waits until it accepts connections.
    pub async fn restart(&self) -> Result<()> {
        self.stop().await?;
        self.start_again().await
    }

    /// Stops the server with a fast shutdown (sessions are terminated, a checkpoint is
    /// written). Does nothing when it is not running.
    pub async fn stop(&self) -> Result<()> {
        self.stop_server("fast").await
    }

    /// Stops the server with an immediate shutdown, as after a crash (no checkpoint; the next
    /// start runs recovery). Does nothing when it is not running.
    pub async fn stop_immediate(&self) -> Result<()> {
        self.stop_server("immediate").await
    }

    /// Starts a stopped server again on the same port and waits until it accepts connections.
    /// Does nothing when it is running.
    pub async fn start_again(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        match self.start_server().await? {
            StartOutcome::Started => {}
            StartOutcome::AddressInUse(e) => {
                return Err(e.context(format!(
                    "port {} was taken while PostgreSQL was stopped",
                    self.port
                )));
            }
        }
        self.wait_ready().await
    }

    async fn initdb(&self, password_file: &Path) -> Result<()> {
        let initdb = self.bin_dir.join("initdb");
        let mut cmd = self.server_command(&initdb);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", password_file.display()));
        let output = run(&mut cmd, &initdb).await?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                self.root_hint()
            );
        }
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        text.push_str("\n# Added by palisade's integration::postgres\ninclude 'palisade.conf'\n");
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        Ok(())
    }

    /// A hint for permission failures when running as another OS user.
    fn root_hint(&self) -> String {
        if self.run_as.is_some() {
            format!(
                "\n(running as root, so initdb ran as an unprivileged account; it needs to be \
                 able to reach {}: check the permissions of its parent directories)",
                self.root().display()
            )
        } else {
            String::new()
        }
    }

    fn write_tls_files(&self) -> Result<TlsFiles> {
        let ca_key = rcgen::KeyPair::generate().context("generating the test CA key")?;
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).context("test CA parameters")?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Palisade test PostgreSQL CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("self-signing the test CA")?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().context("generating the server key")?;
        let mut server_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .context("server certificate parameters")?;
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .context("issuing the server certificate")?;

        let ca_cert_pem = ca_cert.pem();
        let ca_cert_path = self.root().join("ca.crt");
        write_file(&ca_cert_path, &ca_cert_pem, 0o644, self.run_as)?;
        // The server sends the chain it is given; the leaf alone is enough for clients that
        // trust the CA.
        write_file(
            &self.root().join("server.crt"),
            &server_cert.pem(),
            0o644,
            self.run_as,
        )?;
        // PostgreSQL refuses a key readable by others, or not owned by its own account.
        write_file(
            &self.root().join("server.key"),
            &server_key.serialize_pem(),
            0o600,
            self.run_as,
        )?;
        Ok(TlsFiles {
            ca_cert_pem,
            ca_cert_path,
        })
    }

    fn write_conf(&self, opts: &PostgresOptions) -> Result<()> {
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), conf_quote(HOST)),
            ("port".into(), self.port.to_string()),
            ("unix_socket_directories".into(), self.socket_dir_setting()),
            ("max_connections".into(), "300".into()),
            ("shared_buffers".into(), "16MB".into()),
            // No fsync (a test cluster need not survive a power cut), but keep
            // synchronous_commit on: WAL is still written at commit, so a committed transaction
            // survives `stop_immediate` (a crash of the server, not of the machine).
            ("fsync".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("password_encryption".into(), conf_quote("scram-sha-256")),
            (
                "log_line_prefix".into(),
                conf_quote("%m [%p] app=%a user=%u db=%d "),
            ),
            (
                "log_statement".into(),
                conf_quote(if opts.log_statements { "all" } else { "none" }),
            ),
            ("logging_collector".into(), "off".into()),
            ("lc_messages".into(), conf_quote("C")),
        ];
        if self.tls.is_some() {
            settings.extend([
                ("ssl".into(), "on".into()),
                (
                    "ssl_cert_file".into(),
                    conf_quote(path_str(&self.root().join("server.crt"))?),
                ),
                (
                    "ssl_key_file".into(),
                    conf_quote(path_str(&self.root().join("server.key"))?),
                ),
            ]);
        }
        settings.extend(
            opts.extra_conf
                .iter()
                .map(|(key, value)| (key.clone(), conf_value(value))),
        );
        let mut text = String::from(
            "# Written by palisade's integration::postgres on every start; edits are lost.\n",
        );
        for (key, value) in &settings {
            text.push_str(&format!("{key} = {value}\n"));
        }
        write_file(
            &self.data_dir.join("palisade.conf"),
            &text,
            0o600,
            self.run_as,
        )
    }

    /// `unix_socket_directories`: the cluster directory, or none when its path is too long.
    fn socket_dir_setting(&self) -> String {
        match self.root().to_str() {
            Some(dir) if dir.len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH => conf_quote(dir),
            _ => conf_quote(""),
        }
    }

    async fn start_server(&self) -> Result<StartOutcome> {
        let log_path = self.log_path();
        let log_offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let timeout = READY_TIMEOUT.as_secs().to_string();
        let output = self
            .pg_ctl(&[
                "start",
                "-D",
                path_str(&self.data_dir)?,
                "-l",
                path_str(&log_path)?,
                "-w",
                "-t",
                &timeout,
            ])
            .await?;
        if output.status.success() {
            self.running.store(true, Ordering::SeqCst);
            return Ok(StartOutcome::Started);
        }
        let new_log = read_from(&log_path, log_offset);
        let error = anyhow!(
            "pg_ctl start failed ({}): {}\n--- server log ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            tail(&new_log, LOG_TAIL_LINES)
        );
        if new_log.contains("Address already in use") {
            return Ok(StartOutcome::AddressInUse(error));
        }
        // pg_ctl may have given up while the server is still starting: make sure it is gone.
        let _stopped = self
            .pg_ctl(&[
                "stop",
                "-D",
                path_str(&self.data_dir)?,
                "-m",
                "immediate",
                "-w",
            ])
            .await;
        Err(error)
    }

    async fn stop_server(&self, mode: &str) -> Result<()> {
        let output = self
            .pg_ctl(&[
                "stop",
                "-D",
                path_str(&self.data_dir)?,
                "-m",
                mode,
                "-w",
                "-t",
                &READY_TIMEOUT.as_secs().to_string(),
            ])
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Exit status 1 with "Is server running?" means there was nothing to stop.
        if !output.status.success() && !stderr.contains("Is server running?") {
            bail!(
                "pg_ctl stop -m {mode} failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until a SCRAM login as the superuser and `select 1` succeed.
    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let error = match self.connect("postgres").await {
                Ok(client) => match client.simple_query("select 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => anyhow::Error::from(e),
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(error.context(format!(
                    "PostgreSQL on port {} did not accept connections within {READY_TIMEOUT:?}\n\
                     --- server log ---\n{}",
                    self.port,
                    tail(&self.log_contents().unwrap_or_default(), LOG_TAIL_LINES)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<Output> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut cmd = self.server_command(&pg_ctl);
        cmd.args(args);
        run(&mut cmd, &pg_ctl).await
    }

    /// A command for the server side, run as [`RunAs`] when we are root.
    fn server_command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        clear_pg_env(&mut cmd);
        cmd.current_dir(self.root())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    /// Synchronous stop for `Drop`: immediate for a temporary cluster, fast (with a
    /// checkpoint) for a kept one.
    fn stop_blocking(&self) {
        let mode = match self.dir {
            ClusterDir::Temp(_) => "immediate",
            ClusterDir::Kept(_) => "fast",
        };
        let mut cmd = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        for var in PG_ENV_TO_CLEAR {
            cmd.env_remove(var);
        }
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", "30"])
            .current_dir(self.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(user) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        }
        let _status = cmd.status();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.is_running() {
            self.stop_blocking();
        }
        // `self.dir` is dropped after this: a temporary directory is removed, a kept one stays.
    }
}

enum StartOutcome {
    Started,
    /// The port was taken; the error describes it.
    AddressInUse(anyhow::Error),
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// In order: `$PG_BIN_DIR`; `pg_config --bindir`; the newest `/usr/lib/postgresql/*/bin` (Debian
/// and Ubuntu); the directory of `initdb` on `PATH` (symlinks resolved). The error says how to
/// install PostgreSQL.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|bin| dir.join(bin).is_file())
    };

    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "${BIN_DIR_ENV} is {} but initdb, pg_ctl and postgres are not all there",
            dir.display()
        );
    }

    let pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(output) = pg_config {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }

    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let newest = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<f64>().ok()?;
                let bin = entry.path().join("bin");
                has_server(&bin).then_some((version, bin))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, bin)) = newest {
            return Ok(bin);
        }
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(bin) = real.parent().filter(|bin| has_server(bin)) {
                    return Ok(bin.to_path_buf());
                }
            }
        }
    }

    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: looked at ${BIN_DIR_ENV}, \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH. Install them with \
         `scripts/ensure-deps.sh` (Debian: apt-get install postgresql-15 postgresql-client), \
         or point ${BIN_DIR_ENV} at a directory holding initdb"
    )
}

/// The OS account for the server side: `None` when not root, resolved once per process.
async fn run_as() -> Result<Option<RunAs>> {
    static RUN_AS: tokio::sync::OnceCell<Option<RunAs>> = tokio::sync::OnceCell::const_new();
    RUN_AS.get_or_try_init(resolve_run_as).await.copied()
}

async fn resolve_run_as() -> Result<Option<RunAs>> {
    if !is_root() {
        return Ok(None);
    }
    if let Some(name) = std::env::var_os(OS_USER_ENV) {
        let name = name.to_string_lossy().into_owned();
        return match lookup_user(&name).await? {
            Some(user) if user.uid != 0 => Ok(Some(user)),
            Some(_) => bail!("${OS_USER_ENV} names {name:?}, which is root"),
            None => bail!("${OS_USER_ENV} names {name:?}, which does not exist"),
        };
    }
    if let Some(user) = lookup_user(DEFAULT_OS_USER).await? {
        return Ok(Some(user));
    }
    create_os_user().await;
    if let Some(user) = lookup_user(DEFAULT_OS_USER).await? {
        return Ok(Some(user));
    }
    if let Some(user) = lookup_user("nobody").await? {
        return Ok(Some(user));
    }
    bail!(
        "running as root, and initdb/postgres refuse root: could not create the OS user \
         {DEFAULT_OS_USER:?} (useradd) and there is no \"nobody\"; set ${OS_USER_ENV} to an \
         unprivileged account"
    )
}

/// Creates [`DEFAULT_OS_USER`] with `useradd --system`, ignoring failures (the caller looks
/// the account up again and falls back to `nobody`).
///
/// Parallel test processes can all find the account missing at once, and concurrent `useradd`
/// runs were seen to clobber each other's `/etc/passwd` entry. So the check and the creation run
/// under `flock` on a lock file (util-linux; without it, unguarded).
async fn create_os_user() {
    let script = format!(
        "getent passwd {DEFAULT_OS_USER} >/dev/null 2>&1 && exit 0; \
         group=--user-group; \
         getent group {DEFAULT_OS_USER} >/dev/null 2>&1 && group='--gid {DEFAULT_OS_USER}'; \
         PATH=\"$PATH:/usr/sbin:/sbin\" useradd --system $group --no-create-home \
         --home-dir /nonexistent --shell /usr/sbin/nologin {DEFAULT_OS_USER}"
    );
    let lock = std::env::temp_dir().join("palisade-test-useradd.lock");
    let quiet = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut locked = Command::new("flock");
    locked.arg(&lock).args(["sh", "-c", &script]);
    quiet(&mut locked);
    if locked.status().await.is_err() {
        let mut unlocked = Command::new("sh");
        unlocked.args(["-c", &script]);
        quiet(&mut unlocked);
        let _status = unlocked.status().await;
    }
}

/// Whether the effective uid is 0.
fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // "Uid:\treal\teffective\tsaved\tfs"
        if let Some(euid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
        {
            return euid == "0";
        }
    }
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Looks an account up with `getent passwd` (so NSS sources count too).
async fn lookup_user(name: &str) -> Result<Option<RunAs>> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .context("running getent passwd")?;
    if !output.status.success() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let mut fields = line.trim().split(':');
    let (Some(_name), Some(_password), Some(uid), Some(gid)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        bail!("unexpected getent passwd output for {name:?}: {line:?}");
    };
    Ok(Some(RunAs {
        uid: uid.parse().with_context(|| format!("uid of {name:?}"))?,
        gid: gid.parse().with_context(|| format!("gid of {name:?}"))?,
    }))
}

/// Runs a command to completion, capturing its output.
async fn run(cmd: &mut Command, program: &Path) -> Result<Output> {
    cmd.output()
        .await
        .with_context(|| format!("running {}", program.display()))
}

fn clear_pg_env(cmd: &mut Command) {
    for var in PG_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Writes `contents` to `path` with `mode`, owned by `owner` when given.
fn write_file(path: &Path, contents: &str, mode: u32, owner: Option<RunAs>) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)?;
    chown_to(path, owner)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn chown_to(path: &Path, owner: Option<RunAs>) -> Result<()> {
    if let Some(user) = owner {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {}:{} {}", user.uid, user.gid, path.display()))?;
    }
    Ok(())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("path is not UTF-8: {}", path.display()))
}

/// Reads a file from `offset` on; empty when it cannot be read.
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        use std::io::Seek as _;
        if file.seek(std::io::SeekFrom::Start(offset)).is_ok() {
            let _read = file.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A single-quoted `postgresql.conf` string.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A user-supplied `postgresql.conf` value: kept when it is a plain word/number or already
/// quoted, quoted otherwise.
fn conf_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain || value.starts_with('\'') {
        value.to_owned()
    } else {
        conf_quote(value)
    }
}

/// A libpq/tokio-postgres key/value connection string value.
fn conninfo_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::ensure;

    #[tokio::test]
    async fn starts_and_answers_select_1() -> Result<()> {
        let pg = TestPostgres::start().await?;
        ensure!(pg.host() == "127.0.0.1");
        ensure!(pg.port() != 0);
        let client = pg.connect("postgres").await?;
        let row = client.query_one("select 1::int4", &[]).await?;
        ensure!(row.get::<_, i32>(0) == 1);
        ensure!(pg.psql("postgres", "select 1").await?.trim() == "1");
        let listen = pg.psql("postgres", "show listen_addresses").await?;
        ensure!(listen.trim() == "127.0.0.1", "listen_addresses = {listen}");
        let max = pg.psql("postgres", "show max_connections").await?;
        ensure!(max.trim() == "300", "max_connections = {max}");
        Ok(())
    }

    #[tokio::test]
    async fn scram_is_required() -> Result<()> {
        let pg = TestPostgres::start().await?;
        let wrong = format!(
            "host={} port={} user={} password=wrong dbname=postgres",
            pg.host(),
            pg.port(),
            pg.superuser()
        );
        let refused = tokio_postgres::connect(&wrong, tokio_postgres::NoTls).await;
        let Err(e) = refused else {
            bail!("a wrong password was accepted");
        };
        ensure!(
            format!("{e:?}").contains("password authentication failed"),
            "unexpected error: {e:?}"
        );
        let no_password = format!(
            "host={} port={} user={}",
            pg.host(),
            pg.port(),
            pg.superuser()
        );
        ensure!(
            tokio_postgres::connect(&no_password, tokio_postgres::NoTls)
                .await
                .is_err(),
            "a login without password was accepted"
        );

        let methods = pg
            .psql(
                "postgres",
                "select distinct auth_method from pg_hba_file_rules order by 1",
            )
            .await?;
        ensure!(
            methods.trim() == "scram-sha-256",
            "pg_hba methods: {methods}"
        );
        let verifier = pg
            .psql(
                "postgres",
                "select left(rolpassword, 14) from pg_authid where rolname = 'postgres'",
            )
            .await?;
        ensure!(verifier.trim() == "SCRAM-SHA-256$", "verifier: {verifier}");
        Ok(())
    }

    #[tokio::test]
    async fn log_shows_statements_with_app_and_user() -> Result<()> {
        let pg = TestPostgres::start().await?;
        pg.psql("postgres", "select 'palisade-log-marker' as m")
            .await?;
        let log = pg.log_contents()?;
        let line = log
            .lines()
            .find(|l| l.contains("statement: select 'palisade-log-marker' as m"))
            .ok_or_else(|| anyhow!("statement not logged:\n{log}"))?;
        ensure!(line.contains("app=psql"), "no application name in {line:?}");
        ensure!(line.contains("user=postgres"), "no user in {line:?}");
        ensure!(!log.contains("never-sent-marker"));
        Ok(())
    }

    #[tokio::test]
    async fn statements_are_not_logged_when_disabled() -> Result<()> {
        let pg = TestPostgres::start_with(PostgresOptions {
            log_statements: false,
            extra_conf: vec![("application_name".into(), "palisade test".into())],
            ..PostgresOptions::default()
        })
        .await?;
        pg.psql("postgres", "select 'quiet-marker'").await?;
        ensure!(!pg.log_contents()?.contains("quiet-marker"));
        // The quoted extra setting reached the server.
        let client = pg.connect("postgres").await?;
        let setting = client
            .query_one(
                "select setting from pg_settings where name = 'application_name'",
                &[],
            )
            .await?;
        ensure!(setting.get::<_, String>(0) == "palisade test");
        Ok(())
    }

    #[tokio::test]
    async fn psql_error_includes_stderr() -> Result<()> {
        let pg = TestPostgres::start().await?;
        let err = pg
            .psql(
                "postgres",
                "select 1; select * from no_such_table; select 2",
            )
            .await
            .err()
            .ok_or_else(|| anyhow!("psql error not reported"))?;
        ensure!(
            err.to_string().contains("no_such_table"),
            "error lacks stderr: {err}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn restart_stop_and_start_again() -> Result<()> {
        let pg = TestPostgres::start().await?;
        pg.psql(
            "postgres",
            "create table t(x int); insert into t values (42)",
        )
        .await?;
        let client = pg.connect("postgres").await?;
        pg.restart().await?;
        ensure!(
            client.simple_query("select 1").await.is_err(),
            "a session survived the restart"
        );
        ensure!(pg.psql("postgres", "select x from t").await?.trim() == "42");

        // A committed row survives an immediate (crash-like) stop.
        pg.psql("postgres", "insert into t values (43)").await?;
        pg.stop_immediate().await?;
        ensure!(!pg.is_running());
        ensure!(
            pg.connect("postgres").await.is_err(),
            "stopped server accepted a login"
        );
        pg.stop().await?; // stopping a stopped server is fine
        pg.start_again().await?;
        let rows = pg.psql("postgres", "select x from t order by x").await?;
        ensure!(rows == "42\n43\n", "rows after recovery: {rows:?}");
        Ok(())
    }

    #[tokio::test]
    async fn three_in_parallel() -> Result<()> {
        let (a, b, c) = tokio::join!(
            TestPostgres::start(),
            TestPostgres::start(),
            TestPostgres::start()
        );
        let all = [a?, b?, c?];
        let mut ports: Vec<u16> = all.iter().map(TestPostgres::port).collect();
        ports.sort_unstable();
        ports.dedup();
        ensure!(ports.len() == 3, "ports collide: {ports:?}");
        for (i, pg) in all.iter().enumerate() {
            pg.psql("postgres", &format!("create table only_in_{i}(x int)"))
                .await?;
        }
        for (i, pg) in all.iter().enumerate() {
            let tables = pg
                .psql(
                    "postgres",
                    "select string_agg(relname, ',') from pg_class where relname like 'only_in_%'",
                )
                .await?;
            ensure!(
                tables.trim() == format!("only_in_{i}"),
                "cluster {i} sees {tables}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn drop_stops_and_removes() -> Result<()> {
        let pg = TestPostgres::start().await?;
        let dir = pg.dir().to_path_buf();
        let port = pg.port();
        drop(pg);
        ensure!(!dir.exists(), "{} still exists", dir.display());
        ensure!(
            tokio::net::TcpStream::connect((HOST, port)).await.is_err(),
            "something still listens on {port}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn ssl_serves_tls() -> Result<()> {
        let pg = TestPostgres::start_with(PostgresOptions {
            ssl: true,
            ..PostgresOptions::default()
        })
        .await?;
        let ca = pg
            .tls_ca_cert_path()
            .ok_or_else(|| anyhow!("no CA path"))?
            .display()
            .to_string();
        ensure!(
            pg.tls_ca_cert_pem()
                .is_some_and(|p| p.contains("BEGIN CERTIFICATE"))
        );
        // libpq (psql) verifies the chain and the host name against our CA.
        let psql = pg.bin_dir().join("psql");
        let output = Command::new(&psql)
            .args(["-X", "-At", "-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"])
            .arg("-d")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}",
                pg.port()
            ))
            .env("PGPASSWORD", pg.superuser_password())
            .output()
            .await?;
        ensure!(
            output.status.success(),
            "psql over TLS failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ensure!(String::from_utf8_lossy(&output.stdout).trim() == "t");
        // Plain connections still work.
        pg.connect("postgres").await?;
        Ok(())
    }

    #[tokio::test]
    async fn keep_dir_is_kept_and_reused() -> Result<()> {
        let parent = tempfile::tempdir()?;
        let dir = parent.path().join("cluster");
        let password = {
            let pg = TestPostgres::start_with(PostgresOptions {
                keep_dir: Some(dir.clone()),
                ..PostgresOptions::default()
            })
            .await?;
            pg.psql(
                "postgres",
                "create table kept(x int); insert into kept values (7)",
            )
            .await?;
            pg.superuser_password().to_owned()
        };
        ensure!(
            dir.join("data").join("PG_VERSION").exists(),
            "kept dir removed"
        );
        let pg = TestPostgres::start_with(PostgresOptions {
            keep_dir: Some(dir.clone()),
            ..PostgresOptions::default()
        })
        .await?;
        ensure!(pg.superuser_password() == password);
        ensure!(pg.psql("postgres", "select x from kept").await?.trim() == "7");
        Ok(())
    }

    #[test]
    fn finds_binaries() -> Result<()> {
        let dir = find_bin_dir()?;
        ensure!(dir.join("initdb").is_file());
        Ok(())
    }

    #[test]
    fn quoting() {
        assert_eq!(conf_value("on"), "on");
        assert_eq!(conf_value("16MB"), "16MB");
        assert_eq!(conf_value("'x'"), "'x'");
        assert_eq!(conf_value("a b"), "'a b'");
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conninfo_quote("db"), "db");
        assert_eq!(conninfo_quote("my db"), "'my db'");
        assert_eq!(conninfo_quote(""), "''");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }
}
