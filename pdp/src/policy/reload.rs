//! Watching the policy directory and swapping in each good new set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};

use super::{PolicyProblem, PolicySnapshot, load_dir};

/// The problems of the last edit that was refused.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// When the edit was seen.
    pub at: SystemTime,
    /// What is wrong with it.
    pub problems: Vec<PolicyProblem>,
}

/// The active policy set, shared by every request. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    active: watch::Receiver<Arc<PolicySnapshot>>,
    sender: Arc<watch::Sender<Arc<PolicySnapshot>>>,
    rejected: Arc<Mutex<Option<Rejected>>>,
    /// Bumped after every swap: a lock-free way for sessions to see that
    /// the set they decide with is still the active one.
    generation: Arc<AtomicU64>,
}

impl PolicyStore {
    /// Loads the directory; a bad set at start is an error with every problem.
    pub fn open(dir: &Path) -> Result<Self, Vec<PolicyProblem>> {
        let snapshot = load_dir(dir)?;
        let (sender, active) = watch::channel(Arc::new(snapshot));
        Ok(Self {
            dir: dir.to_owned(),
            active,
            sender: Arc::new(sender),
            rejected: Arc::new(Mutex::new(None)),
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The set requests should use now.
    pub fn current(&self) -> Arc<PolicySnapshot> {
        self.active.borrow().clone()
    }

    /// A number that changes after every swap of the active set. Read it
    /// before [`current`](Self::current): the set then is at least as new as
    /// the generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A receiver that sees every new set (for caches keyed by version).
    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicySnapshot>> {
        self.active.clone()
    }

    /// The last refused edit, if the active set is older than the files.
    pub fn rejected(&self) -> Option<Rejected> {
        self.rejected.lock().ok().and_then(|r| r.clone())
    }

    /// Re-reads the directory once. A good set that differs replaces the active
    /// one; a bad one is recorded and logged, and the active set stays.
    pub fn reload(&self) -> Result<bool, Vec<PolicyProblem>> {
        match load_dir(&self.dir) {
            Ok(snapshot) => {
                if let Ok(mut r) = self.rejected.lock() {
                    *r = None;
                }
                if snapshot.version == self.current().version {
                    return Ok(false);
                }
                info!(version = %snapshot.version, policies = snapshot.meta.len(), "policy set loaded");
                self.sender.send_replace(Arc::new(snapshot));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            }
            Err(problems) => {
                if let Ok(mut r) = self.rejected.lock() {
                    let same = r.as_ref().is_some_and(|old| old.problems == problems);
                    if !same {
                        *r = Some(Rejected {
                            at: SystemTime::now(),
                            problems: problems.clone(),
                        });
                    }
                }
                Err(problems)
            }
        }
    }

    /// Polls the directory every `interval` until the process ends. Polling
    /// (rather than inotify) also works on network and container mounts, and
    /// the content hash makes a touch without change a no-op.
    pub fn spawn_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut last_refused: Option<Vec<PolicyProblem>> = None;
            let mut last_seen = fingerprint(&store.dir);
            loop {
                tokio::time::sleep(interval).await;
                // Parsing and validating is the expensive part: only when a
                // file was added, removed, resized or touched.
                let seen = fingerprint(&store.dir);
                if seen == last_seen {
                    continue;
                }
                last_seen = seen;
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || store.reload()).await;
                // Log a refused edit once, not on every poll.
                if let Ok(Err(problems)) = result {
                    if last_refused.as_ref() != Some(&problems) {
                        for p in &problems {
                            error!(problem = %p, "policy edit refused; keeping the last good set");
                        }
                        last_refused = Some(problems);
                    }
                } else {
                    last_refused = None;
                }
            }
        })
    }
}

/// A cheap summary of the directory: names, sizes and modification times.
fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).collect())
        .unwrap_or_default();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        e.file_name().hash(&mut hasher);
        if let Ok(m) = e.metadata() {
            m.len().hash(&mut hasher);
            m.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}
