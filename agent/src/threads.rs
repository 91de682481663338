//! Session threads: each session runs wholly on one thread, its own
//! single-threaded runtime, from the TLS handshake to its end.
//!
//! Why not the work-stealing runtime: a session's statement wakes its task
//! twice (the client's message, then the database's answer). On a
//! work-stealing runtime each wake may unpark another worker to steal the
//! task, and on a host shared with the database (the agent's usual place)
//! those futex wake-ups and migrations cost more CPU than the statement's
//! own work: measured, 35 against 26 µs of agent CPU per statement (README
//! "Benchmarks"). Pinned sessions pay no such cost, and several threads
//! still use every core: a new session goes to the thread with the fewest.
//!
//! What is not per session (the PDP client, the audit feed and streamer,
//! policy polling) stays on the agent's main runtime; sessions reach it
//! through channels, which work across runtimes. A thread steals no work,
//! so a session's steps of a millisecond or more go to [`offload`] rather
//! than stall the thread's other sessions.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};

/// Threads that sessions are spread over.
pub struct SessionThreads {
    threads: Vec<Thread>,
    /// Where the search for the least loaded thread starts, so ties rotate.
    next: AtomicUsize,
}

struct Thread {
    handle: Handle,
    /// Sessions running on it.
    sessions: Arc<AtomicUsize>,
    /// Dropped to stop the thread (its runtime drops what still runs on it).
    _stop: oneshot::Sender<()>,
}

/// One session's place on a thread; the thread's count goes down when it
/// is dropped (when the session's task ends or is aborted).
pub struct Seat {
    sessions: Arc<AtomicUsize>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SessionThreads {
    /// Starts `count` threads (at least one), each running a
    /// single-threaded runtime with I/O and timers.
    pub fn start(count: usize) -> io::Result<Self> {
        let threads = (0..count.max(1))
            .map(start_thread)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// The threads `config` asks for (`worker_threads`; default one per
    /// CPU).
    pub fn for_config(config: &crate::config::AgentConfig) -> io::Result<Self> {
        Self::start(config.worker_threads.unwrap_or_else(cpus))
    }

    /// The thread with the fewest sessions, and a seat on it for a new one.
    pub fn seat(&self) -> (&Handle, Seat) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.threads.len();
        let thread = (0..n)
            .map(|k| &self.threads[(start + k) % n])
            .min_by_key(|t| t.sessions.load(Ordering::Relaxed))
            .unwrap_or(&self.threads[0]);
        thread.sessions.fetch_add(1, Ordering::Relaxed);
        (
            &thread.handle,
            Seat {
                sessions: Arc::clone(&thread.sessions),
            },
        )
    }

    /// Sessions running on each thread.
    pub fn load(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.sessions.load(Ordering::Relaxed))
            .collect()
    }
}

/// Starts session thread `i`. Its runtime is built, run and dropped on the
/// thread itself (a runtime must not be dropped inside another's context,
/// as it would be here if spawning the thread failed after building it).
fn start_thread(i: usize) -> io::Result<Thread> {
    let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel::<io::Result<Handle>>(1);
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("palisade-sessions-{i}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            // Tasks spawned through the handle run while this thread is
            // inside `block_on`.
            let _ = runtime.block_on(stopped);
        })?;
    let handle = handle_rx
        .recv()
        .map_err(|_| io::Error::other("a session thread ended before its runtime started"))??;
    Ok(Thread {
        handle,
        sessions: Arc::new(AtomicUsize::new(0)),
        _stop: stop,
    })
}

/// Work handed off a session thread failed to finish (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("work off the session thread failed: {0}")]
pub struct OffloadError(#[from] tokio::task::JoinError);

/// How many CPU-heavy jobs run off the session threads at once, agent-wide.
fn offload_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(cpus()))
}

/// The CPUs this process may use (one when that cannot be told).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs CPU-heavy `work` (parsing a long script, a password hash) on a
/// blocking thread, at most one job per CPU at a time across the agent: a
/// session thread serves many sessions and hands none of them to another
/// thread, so work of a millisecond or more inline would stall them all.
pub async fn offload<T, F>(work: F) -> Result<T, OffloadError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // The semaphore is never closed, so acquiring cannot fail; without a
    // permit the work still runs (only unbounded).
    let _permit = offload_slots().acquire().await.ok();
    Ok(tokio::task::spawn_blocking(work).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_session_goes_to_the_thread_with_the_fewest() {
        let threads = SessionThreads::start(3).expect("threads start");
        let seats: Vec<Seat> = (0..6).map(|_| threads.seat().1).collect();
        assert_eq!(threads.load(), vec![2, 2, 2]);
        // Sessions end on one thread: the next ones go there.
        let mut seats = seats;
        seats.retain(|s| !Arc::ptr_eq(&s.sessions, &threads.threads[1].sessions));
        assert_eq!(threads.load(), vec![2, 0, 2]);
        let _a = threads.seat();
        let _b = threads.seat();
        assert_eq!(threads.load(), vec![2, 2, 2]);
        drop(seats);
        assert_eq!(threads.load(), vec![0, 2, 0]);
    }

    #[tokio::test]
    async fn offloaded_work_runs_elsewhere_and_a_panic_is_an_error() {
        let here = std::thread::current().id();
        let there = offload(|| std::thread::current().id()).await.expect("runs");
        assert_ne!(here, there);
        let failed = offload(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
    }

    #[test]
    fn tasks_run_on_the_session_threads() {
        let threads = SessionThreads::start(2).expect("threads start");
        let (handle, _seat) = threads.seat();
        let name = handle.spawn(async { std::thread::current().name().map(str::to_owned) });
        let name = futures::executor::block_on(name).expect("task runs");
        assert!(
            name.is_some_and(|n| n.starts_with("palisade-sessions-")),
            "the task ran elsewhere"
        );
    }
}
