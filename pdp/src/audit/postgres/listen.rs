//! The change feed of the PostgreSQL store: `LISTEN palisade_audit` on a
//! connection of its own, so a replica wakes on events another one stored.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// The notification channel every append notifies.
pub(super) const CHANNEL: &str = "palisade_audit";
/// How often the listening connection is checked to be alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Stops the listener when the store goes away.
pub(super) struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening; every notification, and every (re)connection (events
/// may have been stored while not listening), bumps `changes`.
pub(super) fn spawn(config: Config, changes: Arc<watch::Sender<u64>>) -> Listener {
    Listener(tokio::spawn(run(config, changes)))
}

pub(super) fn bump(changes: &watch::Sender<u64>) {
    changes.send_modify(|n| *n = n.wrapping_add(1));
}

async fn run(config: Config, changes: Arc<watch::Sender<u64>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listened = listen(&config, &changes, &mut backoff).await;
        if let Err(reason) = listened {
            tracing::warn!(%reason, "audit change feed lost; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens on one connection until it fails.
async fn listen(
    config: &Config,
    changes: &Arc<watch::Sender<u64>>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let notified = Arc::clone(changes);
    let drive = async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(_) = message.map_err(|e| e.to_string())? {
                bump(&notified);
            }
        }
        Err("connection closed".to_owned())
    };
    let listen = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        *backoff = Duration::from_millis(100);
        bump(changes);
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            match tokio::time::timeout(HEARTBEAT, client.batch_execute("SELECT 1")).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("heartbeat timed out".to_owned()),
            }
        }
    };
    tokio::select! {
        result = drive => result,
        result = listen => result,
    }
}
