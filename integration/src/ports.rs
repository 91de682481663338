//! Loopback port helpers for tests: pick a free port, wait until something listens on one.
//!
//! [`free_port`] asks the kernel for an unused port by binding `127.0.0.1:0` and closing the
//! socket again. Another process may grab the port between that and the moment the caller binds
//! it, so callers that start a server on it should retry on "address in use" (as
//! [`crate::postgres::TestPostgres`] does). Within one process the same port is never handed out
//! twice, which keeps parallel tests in one test binary apart.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Ports already handed out by [`free_port`] in this process.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has not
/// handed out before.
///
/// The port is found by binding `127.0.0.1:0`, reading the port the kernel chose and closing
/// the socket. It can be taken by another process before the caller binds it: retry on
/// "address in use".
pub fn free_port() -> Result<u16> {
    const ATTEMPTS: usize = 64;
    for _ in 0..ATTEMPTS {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding 127.0.0.1:0 to find a free port")?;
        let port = listener
            .local_addr()
            .context("reading the local address of a listener on 127.0.0.1:0")?
            .port();
        drop(listener);
        let mut seen = handed_out()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(port) {
            return Ok(port);
        }
    }
    bail!(
        "could not find a free port on 127.0.0.1 that was not already handed out ({ATTEMPTS} tries)"
    )
}

/// Waits until a TCP connection to `addr` succeeds, retrying every 50 ms, for at most `timeout`.
///
/// Returns an error naming the address and the last connect error when the deadline passes.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(
            remaining.min(Duration::from_secs(1)),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        let last_error = match attempt {
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_elapsed) => "connect attempt timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!(
                "nothing accepted connections on {addr} within {timeout:?} (last error: {last_error})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() -> Result<()> {
        let a = free_port()?;
        let b = free_port()?;
        anyhow::ensure!(a != b, "free_port returned {a} twice");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, a))?;
        drop(listener);
        Ok(())
    }

    #[tokio::test]
    async fn wait_for_port_sees_a_listener_and_times_out_without_one() -> Result<()> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        wait_for_port(addr, Duration::from_secs(5)).await?;
        drop(listener);

        let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let started = Instant::now();
        let result = wait_for_port(closed, Duration::from_millis(300)).await;
        anyhow::ensure!(result.is_err(), "wait_for_port succeeded on a closed port");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(5),
            "timeout not honoured"
        );
        Ok(())
    }
}
