//! Cancel keys: the agent gives each client its own key and maps a cancel
//! request to the upstream backend of that session.

use std::sync::Arc;

use dashmap::DashMap;
use rand::Rng;
use tokio::sync::Notify;

use crate::backend::{self, BackendKey};

/// Where a cancel for one session goes.
#[derive(Clone)]
struct Route {
    secret: [u8; 4],
    upstream_addr: String,
    upstream_key: BackendKey,
    /// Wakes the session when it waits for an approval (nothing runs
    /// upstream then; the cancel withdraws the request).
    cancelled: Arc<Notify>,
}

/// All sessions' cancel keys.
#[derive(Clone, Default)]
pub struct CancelRegistry {
    routes: Arc<DashMap<i32, Route>>,
}

/// A session's registration; dropping it forgets the key.
pub struct CancelHandle {
    registry: CancelRegistry,
    /// The process id the client was given.
    pub process_id: i32,
    /// The secret the client was given.
    pub secret: [u8; 4],
    /// Notified on every matching cancel request.
    pub cancelled: Arc<Notify>,
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.routes.remove(&self.process_id);
    }
}

impl CancelRegistry {
    /// Registers a session's upstream key under a fresh agent key.
    pub fn register(&self, upstream_addr: String, upstream_key: BackendKey) -> CancelHandle {
        let mut rng = rand::rng();
        loop {
            let process_id: i32 = rng.random_range(1..i32::MAX);
            let secret: [u8; 4] = rng.random();
            if let dashmap::Entry::Vacant(v) = self.routes.entry(process_id) {
                let cancelled = Arc::new(Notify::new());
                v.insert(Route {
                    secret,
                    upstream_addr: upstream_addr.clone(),
                    upstream_key: upstream_key.clone(),
                    cancelled: cancelled.clone(),
                });
                return CancelHandle {
                    registry: self.clone(),
                    process_id,
                    secret,
                    cancelled,
                };
            }
        }
    }

    /// Forwards a client's cancel request if its key matches a session.
    /// Unknown keys are ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, process_id: i32, secret: &[u8]) {
        let route = self.routes.get(&process_id).map(|r| r.clone());
        let Some(route) = route else {
            return;
        };
        if !constant_time_eq(&route.secret, secret) {
            return;
        }
        route.cancelled.notify_waiters();
        if let Err(e) = backend::cancel(&route.upstream_addr, &route.upstream_key).await {
            tracing::warn!(error = %e, "cancel request could not be forwarded");
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
