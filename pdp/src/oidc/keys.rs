//! One issuer's cached key set and how it is refreshed.
//!
//! Readers take an `Arc` snapshot of the current set without waiting. A
//! refresh happens on demand only: when a token names a key the set lacks,
//! or when a fetched set is older than its max age. Refreshes are
//! single-flight (one in progress per issuer; callers that need its result
//! wait for it, callers that can use the current set do not) and
//! rate-limited (at most one per `min_refresh_interval`), so forged key ids
//! cannot turn the PDP into a load generator against the issuer. A failed
//! refresh keeps the previous set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::algorithm::Algorithm;
use super::config::IssuerConfig;
use super::error::TokenError;
use super::jwks::{KeySet, Selection, SigningKey};
use super::source::KeySource;

/// An immutable key set plus where it came from in time.
#[derive(Debug)]
struct Snapshot {
    keys: KeySet,
    /// Bumped by every successful refresh, so a waiter can tell that the
    /// refresh it queued behind already produced a new set.
    generation: u64,
    /// When the set was loaded; `None` for a URL source not fetched yet.
    loaded_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
}

/// What a refresh request came to.
enum Refresh {
    /// A set newer than the caller's is current (loaded now or by another caller).
    Done(Arc<Snapshot>),
    /// Too soon after the previous attempt, or another refresh is in flight
    /// and the caller chose not to wait: the current set stands.
    Skipped,
    /// Loading failed (logged); the current set stands.
    Failed,
}

/// Keys of one issuer with their refresh policy.
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    issuer: String,
    source: KeySource,
    min_refresh_interval: Duration,
    max_age: Duration,
    current: RwLock<Arc<Snapshot>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    /// Load attempts after start-up; read by tests.
    loads: AtomicU64,
}

impl IssuerKeys {
    /// Wraps a source. `initial` is the set read at start-up (file sources)
    /// or `None` (URL sources, fetched on first use).
    pub(crate) fn new(config: &IssuerConfig, source: KeySource, initial: Option<KeySet>) -> Self {
        let loaded_at = initial.as_ref().map(|_| Instant::now());
        let snapshot = Snapshot {
            keys: initial.unwrap_or_default(),
            generation: 0,
            loaded_at,
        };
        IssuerKeys {
            issuer: config.issuer.clone(),
            source,
            min_refresh_interval: config.min_refresh_interval,
            max_age: config.jwks_max_age,
            current: RwLock::new(Arc::new(snapshot)),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            loads: AtomicU64::new(0),
        }
    }

    /// How many times the source was loaded after start-up.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn is_stale(&self, snapshot: &Snapshot) -> bool {
        self.source.is_remote()
            && snapshot
                .loaded_at
                .is_none_or(|at| at.elapsed() >= self.max_age)
    }

    /// Finds the key to check a token with, refreshing the set if needed.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<SigningKey>, TokenError> {
        let unavailable = || TokenError::KeysUnavailable(self.issuer.clone());
        let unknown = || TokenError::UnknownKey {
            kid: kid.map(|k| super::error::display_safe(k, 128)),
        };

        let mut snapshot = self.snapshot();
        let mut failed = false;
        if self.is_stale(&snapshot) {
            // With keys at hand, do not queue behind a refresh already in flight.
            let wait = snapshot.keys.is_empty();
            match self.refresh(snapshot.generation, wait).await {
                Refresh::Done(newer) => snapshot = newer,
                Refresh::Failed => failed = true,
                Refresh::Skipped => {}
            }
            if snapshot.keys.is_empty() {
                return Err(unavailable());
            }
        }
        match snapshot.keys.select(kid, alg) {
            Selection::Found(key) => return Ok(key),
            Selection::Ambiguous => return Err(unknown()),
            Selection::Missing if failed => return Err(unavailable()),
            Selection::Missing => {}
        }
        match self.refresh(snapshot.generation, true).await {
            Refresh::Done(newer) => match newer.keys.select(kid, alg) {
                Selection::Found(key) => Ok(key),
                Selection::Missing | Selection::Ambiguous => Err(unknown()),
            },
            Refresh::Skipped => Err(unknown()),
            Refresh::Failed => Err(unavailable()),
        }
    }

    /// Reloads the set unless one newer than generation `seen` exists already,
    /// or the last attempt was under `min_refresh_interval` ago.
    async fn refresh(&self, seen: u64, wait: bool) -> Refresh {
        let mut state = if wait {
            self.refresh.lock().await
        } else {
            match self.refresh.try_lock() {
                Ok(state) => state,
                Err(_) => return Refresh::Skipped,
            }
        };
        let current = self.snapshot();
        if current.generation != seen {
            return Refresh::Done(current);
        }
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refresh_interval)
        {
            tracing::debug!(issuer = %self.issuer, "key set refresh skipped: rate limited");
            return Refresh::Skipped;
        }
        state.last_attempt = Some(Instant::now());
        self.loads.fetch_add(1, Ordering::Relaxed);
        match self.source.load().await {
            Ok(keys) => {
                tracing::info!(
                    issuer = %self.issuer, source = ?self.source, keys = keys.len(),
                    "issuer key set loaded"
                );
                let newer = Arc::new(Snapshot {
                    keys,
                    generation: current.generation.wrapping_add(1),
                    loaded_at: Some(Instant::now()),
                });
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&newer);
                Refresh::Done(newer)
            }
            Err(reason) => {
                tracing::warn!(
                    issuer = %self.issuer, source = ?self.source, %reason,
                    "issuer key set refresh failed; keeping the current set"
                );
                Refresh::Failed
            }
        }
    }
}
