//! A small connection pool: idle clients kept in a list, new ones opened on
//! demand. A client is handed back with [`Pool::put`] after a successful
//! use; one that saw an error is simply dropped (closing it), so a pooled
//! client is never in an unknown state.

use std::sync::{Mutex, PoisonError};

use tokio_postgres::{Client, Config, NoTls};

use crate::audit::AuditError;

/// Idle connections kept for reuse; more may be open while busy.
const MAX_IDLE: usize = 8;

/// Connections to the audit database.
pub(super) struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The connection settings (for the listener's own connection).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An idle connection, or a new one.
    pub async fn get(&self) -> Result<Client, AuditError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some(client) if client.is_closed() => {}
                Some(client) => return Ok(client),
                None => return connect(&self.config).await,
            }
        }
    }

    /// Hands a client back after a use that ended well.
    pub fn put(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }
}

/// Opens a connection and drives it on its own task.
pub(super) async fn connect(config: &Config) -> Result<Client, AuditError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "audit database connection closed");
        }
    });
    Ok(client)
}
