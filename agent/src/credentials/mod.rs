//! Just-in-time database credentials: for each session the agent mints a
//! login role that lives only as long as the session, is a member of only
//! the roles the PDP granted, and is dropped at session end (or by the
//! reaper after a crash).
//!
//! The generated password never leaves the agent: the server receives only
//! a SCRAM-SHA-256 verifier computed here, so not even the database's
//! statement log (`log_statement = 'all'`) sees it, and [`Secret`] keeps it
//! out of logs, errors and `Debug` output.
//!
//! Scope: `REASSIGN OWNED`/`DROP OWNED` act on the admin connection's
//! database (and shared objects); objects a session role created in another
//! database of the same cluster are not cleaned up here.

mod secret;
pub(crate) mod sql;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

pub use secret::{PASSWORD_BYTES, Secret};
pub use sql::ROLE_PREFIX;

/// How long `retire` waits for each terminated backend to exit before
/// reassigning its objects (milliseconds, `pg_terminate_backend`'s timeout).
const TERMINATE_WAIT_MS: i64 = 5_000;

/// Bound on establishing the admin connection.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent's admin connection to one target. It may create and drop roles
/// (superuser, or `CREATEROLE` with `ADMIN OPTION` on the grantable roles);
/// its secret never leaves the agent.
#[derive(Clone)]
pub struct AdminConfig {
    /// Database host (name, address, or a Unix socket directory).
    pub host: String,
    /// Database port.
    pub port: u16,
    /// Database the admin connects to; ownership cleanup happens there.
    pub database: String,
    /// Admin role.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Longest a session role may live, whatever the session deadline says.
    pub max_lifetime: Duration,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

/// A login role minted for one session: what the agent connects upstream
/// as, and what it must retire at session end.
#[derive(Debug, Clone)]
pub struct SessionRole {
    /// Role name, `palisade_s_<session>_<random>`.
    pub name: String,
    /// Its generated password (prints as `[redacted]`).
    pub password: Secret,
    /// Roles it is a member of (with inheritance), as granted by the PDP.
    pub granted: Vec<String>,
    /// When the server stops accepting its password.
    pub valid_until: SystemTime,
    /// The granted role that inherits objects the session created.
    pub first_granted: String,
}

/// Why a credential operation failed. Messages are lowercase and never
/// contain a password (the type holding it is never part of an error).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The PDP granted no role; the session must be refused.
    #[error("no database role was granted to the session")]
    NoGrantedRoles,
    /// A granted role name cannot be a PostgreSQL role name.
    #[error("invalid database role name {0:?}")]
    InvalidRoleName(String),
    /// The session's deadline (or the role's maximum lifetime) is already over.
    #[error("the session deadline has already passed")]
    DeadlinePassed,
    /// The admin connection could not be established.
    #[error("cannot connect to the database with the admin credential: {detail}")]
    Connect {
        /// What the server or the network said.
        detail: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The admin connection took too long to establish.
    #[error("the database did not answer the admin connection within {0:?}")]
    ConnectTimeout(Duration),
    /// A role statement failed.
    #[error("the database refused to {action}: {detail}")]
    Database {
        /// What the agent was doing (`create the session role`, ...).
        action: &'static str,
        /// What the server said (message and SQLSTATE).
        detail: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl CredentialError {
    /// The server's SQLSTATE, when the server answered with an error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Connect { source, .. } | Self::Database { source, .. } => {
                source.code().map(SqlState::code)
            }
            Self::NoGrantedRoles
            | Self::InvalidRoleName(_)
            | Self::DeadlinePassed
            | Self::ConnectTimeout(_) => None,
        }
    }
}

/// The server's message and SQLSTATE, or the client-side error text.
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (sqlstate {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn database(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CredentialError {
    move |source| CredentialError::Database {
        action,
        detail: detail(&source),
        source,
    }
}

/// What the agent records on each role it mints (`COMMENT ON ROLE`), so the
/// reaper can tell its own roles and where their objects go.
#[derive(Debug, Serialize, Deserialize)]
struct RoleComment {
    palisade_agent: String,
    session: String,
    expires: String,
    granted: Vec<String>,
}

/// Mints and retires session roles on one target. Cheap to clone; one per
/// target. Holds one admin connection (queries are pipelined on it),
/// replaced by a new one when it breaks.
#[derive(Clone)]
pub struct Minter {
    inner: Arc<Inner>,
}

struct Inner {
    config: AdminConfig,
    agent_id: String,
    client: tokio::sync::Mutex<Arc<tokio_postgres::Client>>,
    // INVARIANT: holds every role this process created and has not yet
    // dropped, from before its CREATE ROLE is sent; the reaper never touches
    // these, so it cannot race a mint whose name is not yet in `live`.
    minted: std::sync::Mutex<HashSet<String>>,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("config", &self.inner.config)
            .field("agent_id", &self.inner.agent_id)
            .finish_non_exhaustive()
    }
}

async fn admin_connect(config: &AdminConfig) -> Result<tokio_postgres::Client, CredentialError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .dbname(&config.database)
        .user(&config.user)
        .password(config.password.as_bytes())
        .application_name("palisade-agent credentials")
        .connect_timeout(ADMIN_CONNECT_TIMEOUT);
    let (client, connection) =
        tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, pg.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| CredentialError::ConnectTimeout(ADMIN_CONNECT_TIMEOUT))?
            .map_err(|source| CredentialError::Connect {
                detail: detail(&source),
                source,
            })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "admin connection for session roles ended");
        }
    });
    Ok(client)
}

impl Minter {
    /// Opens the admin connection to the target. `agent_id` marks the roles
    /// this agent mints so that its reaper removes only its own.
    pub async fn connect(config: AdminConfig, agent_id: &str) -> Result<Self, CredentialError> {
        let client = admin_connect(&config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                agent_id: agent_id.to_owned(),
                client: tokio::sync::Mutex::new(Arc::new(client)),
                minted: std::sync::Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The agent id this minter marks its roles with.
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// The admin client, reconnecting first when the last one broke.
    async fn client(&self) -> Result<Arc<tokio_postgres::Client>, CredentialError> {
        let mut current = self.inner.client.lock().await;
        if current.is_closed() {
            tracing::info!("reconnecting the admin connection for session roles");
            *current = Arc::new(admin_connect(&self.inner.config).await?);
        }
        Ok(Arc::clone(&current))
    }

    fn track(&self, name: &str, live: bool) {
        let mut minted = self
            .inner
            .minted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if live {
            minted.insert(name.to_owned());
        } else {
            minted.remove(name);
        }
    }

    fn is_tracked(&self, name: &str) -> bool {
        self.inner
            .minted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    /// Creates the login role for a session: member (with inheritance) of
    /// exactly `granted_roles`, connection limit 1, no other attribute,
    /// valid until `deadline` or the target's maximum lifetime, whichever
    /// comes first.
    pub async fn mint(
        &self,
        session_id: &str,
        granted_roles: &[String],
        deadline: SystemTime,
    ) -> Result<SessionRole, CredentialError> {
        let first_granted = granted_roles
            .first()
            .ok_or(CredentialError::NoGrantedRoles)?
            .clone();
        if let Some(bad) = granted_roles.iter().find(|r| !sql::valid_role_name(r)) {
            return Err(CredentialError::InvalidRoleName(bad.clone()));
        }
        let now = SystemTime::now();
        let cap = now
            .checked_add(self.inner.config.max_lifetime)
            .unwrap_or(deadline);
        let valid_until = sql::floor_to_second(deadline.min(cap));
        if valid_until <= now {
            return Err(CredentialError::DeadlinePassed);
        }

        let suffix: [u8; 3] = rand::rng().random();
        let name = sql::role_name(session_id, &hex::encode(suffix));
        let password = Secret::generate();
        // Only the verifier goes to the server (and to its statement log).
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        let comment = RoleComment {
            palisade_agent: self.inner.agent_id.clone(),
            session: session_id.to_owned(),
            expires: sql::rfc3339(valid_until),
            granted: granted_roles.to_vec(),
        };
        let comment = serde_json::to_string(&comment).unwrap_or_default();
        let members: Vec<String> = granted_roles.iter().map(|r| sql::quote_ident(r)).collect();
        let ident = sql::quote_ident(&name);
        // One simple-query message runs as one implicit transaction: the role
        // never exists without the comment the reaper relies on.
        let statement = format!(
            "CREATE ROLE {ident} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 1 PASSWORD {verifier} \
             VALID UNTIL {until} IN ROLE {members}; COMMENT ON ROLE {ident} IS {comment}",
            verifier = sql::quote_literal(&verifier),
            until = sql::quote_literal(&sql::pg_timestamp(valid_until)),
            members = members.join(", "),
            comment = sql::quote_literal(&comment),
        );
        self.track(&name, true);
        let created = match self.client().await {
            Ok(client) => client
                .batch_execute(&statement)
                .await
                .map_err(database("create the session role")),
            Err(e) => Err(e),
        };
        if let Err(e) = created {
            // A lost reply after a commit leaves a marked role for the reaper.
            self.track(&name, false);
            tracing::warn!(role = %name, error = %e, "minting a session role failed");
            return Err(e);
        }
        tracing::info!(
            role = %name,
            granted = ?granted_roles,
            valid_until = %sql::rfc3339(valid_until),
            "minted session role"
        );
        Ok(SessionRole {
            name,
            password,
            granted: granted_roles.to_vec(),
            valid_until,
            first_granted,
        })
    }

    /// Removes a session's role at session end: ends its backends, hands
    /// objects it created to its first granted role, drops its remaining
    /// privileges and the role. Succeeds when the role is already gone.
    pub async fn retire(&self, role: &SessionRole) -> Result<(), CredentialError> {
        self.retire_named(&role.name, &role.first_granted).await
    }

    async fn retire_named(&self, name: &str, reassign_to: &str) -> Result<(), CredentialError> {
        if !sql::valid_role_name(reassign_to) {
            return Err(CredentialError::InvalidRoleName(reassign_to.to_owned()));
        }
        let client = self.client().await?;
        client
            .query(
                "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity WHERE usename = $1",
                &[&name, &TERMINATE_WAIT_MS],
            )
            .await
            .map_err(database("end the session role's connections"))?;
        if !role_exists(&client, name).await? {
            self.track(name, false);
            return Ok(());
        }
        let ident = sql::quote_ident(name);
        let statement = format!(
            "REASSIGN OWNED BY {ident} TO {to}; DROP OWNED BY {ident}; DROP ROLE IF EXISTS {ident}",
            to = sql::quote_ident(reassign_to),
        );
        if let Err(e) = client
            .batch_execute(&statement)
            .await
            .map_err(database("drop the session role"))
        {
            // A concurrent retire (or reap) may have dropped it meanwhile.
            if e.sqlstate() == Some(SqlState::UNDEFINED_OBJECT.code())
                && !role_exists(&client, name).await?
            {
                self.track(name, false);
                return Ok(());
            }
            tracing::warn!(role = %name, error = %e, "retiring a session role failed");
            return Err(e);
        }
        self.track(name, false);
        tracing::info!(role = %name, reassigned_to = %reassign_to, "retired session role");
        Ok(())
    }

    /// Removes roles this agent minted (the `palisade_s_` prefix and this
    /// agent id in the role's comment) that are not in `live` (role names)
    /// and not minted by this process and still in use: what a crash left
    /// behind. Returns the names removed; a role that cannot be removed is
    /// logged and skipped, to be tried again next time.
    pub async fn reap(&self, live: &HashSet<String>) -> Result<Vec<String>, CredentialError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT rolname::text, shobj_description(oid, 'pg_authid') \
                 FROM pg_roles WHERE starts_with(rolname::text, $1) ORDER BY 1",
                &[&sql::ROLE_PREFIX],
            )
            .await
            .map_err(database("list session roles"))?;
        let mut removed = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(database("list session roles"))?;
            let comment: Option<String> = row.try_get(1).map_err(database("list session roles"))?;
            let Some(comment) = comment.and_then(|c| serde_json::from_str::<RoleComment>(&c).ok())
            else {
                tracing::debug!(role = %name, "not reaping a role without a palisade comment");
                continue;
            };
            if comment.palisade_agent != self.inner.agent_id
                || live.contains(&name)
                || self.is_tracked(&name)
            {
                continue;
            }
            let Some(reassign_to) = comment.granted.first() else {
                tracing::warn!(role = %name, "not reaping a session role with no granted role");
                continue;
            };
            match self.retire_named(&name, reassign_to).await {
                Ok(()) => {
                    tracing::info!(role = %name, session = %comment.session, "reaped session role");
                    removed.push(name);
                }
                Err(e) => tracing::warn!(role = %name, error = %e, "reaping a session role failed"),
            }
        }
        Ok(removed)
    }
}

async fn role_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, CredentialError> {
    let rows = client
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .map_err(database("look up the session role"))?;
    Ok(!rows.is_empty())
}
