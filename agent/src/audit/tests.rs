//! End to end: real spool files in a temporary directory, and a real gRPC
//! server on 127.0.0.1 standing in for the PDP's audit store (plain TCP).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use futures::Stream;
use pb::audit_service_server::{AuditService, AuditServiceServer};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use super::*;

const AGENT: &str = "agent-1";
const FLUSH: Duration = Duration::from_secs(30);

/// The PDP's store as the agent relies on it: idempotent by
/// `(session, sequence)`, acknowledging the highest contiguous sequence of
/// each session after every request.
#[derive(Default)]
struct Store {
    /// First arrivals, in arrival order.
    stored: Vec<(String, u64)>,
    seen: HashSet<(String, u64)>,
    contiguous: HashMap<String, u64>,
    /// Events received again (resent after a reconnect or a restart).
    duplicates: u64,
    agents: BTreeSet<String>,
}

impl Store {
    fn store(&mut self, events: Vec<bytes::Bytes>) -> Vec<pb::EventAck> {
        let mut touched = BTreeSet::new();
        for bytes in events {
            let e = <pb::AuditEvent as prost::Message>::decode(bytes).unwrap();
            self.agents.insert(e.agent_id);
            let id = (e.session_id.clone(), e.sequence);
            if self.seen.insert(id.clone()) {
                self.stored.push(id);
            } else {
                self.duplicates += 1;
            }
            touched.insert(e.session_id);
        }
        let mut acks = Vec::new();
        for s in touched {
            let c = self.contiguous.entry(s.clone()).or_default();
            while self.seen.contains(&(s.clone(), *c + 1)) {
                *c += 1;
            }
            if *c > 0 {
                acks.push(pb::EventAck {
                    session_id: s,
                    sequence: *c,
                });
            }
        }
        acks
    }
}

#[derive(Clone, Default)]
struct TestPdp {
    store: Arc<Mutex<Store>>,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for TestPdp {
    type StreamEventsStream = AckStream;

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let store = Arc::clone(&self.store);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let acks = store.lock().unwrap().store(request.events);
                if tx
                    .send(Ok(pb::StreamEventsResponse { acks }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
        ))))
    }
}

impl TestPdp {
    async fn serve(&self, addr: SocketAddr) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let service = AuditServiceServer::new(self.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
    }

    fn stored(&self) -> Vec<(String, u64)> {
        self.store.lock().unwrap().stored.clone()
    }

    fn duplicates(&self) -> u64 {
        self.store.lock().unwrap().duplicates
    }

    fn agents(&self) -> BTreeSet<String> {
        self.store.lock().unwrap().agents.clone()
    }
}

/// A port nothing listens on (yet).
async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
}

fn event(session: &str, seq: u64) -> pb::AuditEvent {
    pb::AuditEvent {
        session_id: session.into(),
        sequence: seq,
        event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
            text: format!("select {seq}"),
            command_tag: "SELECT 1".into(),
            rows: 1,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn ids(session: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<(String, u64)> {
    seqs.into_iter().map(|n| (session.to_owned(), n)).collect()
}

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 4096,
        ..SpoolConfig::new(dir)
    }
}

/// A spool in a new directory, streaming to a test PDP already serving.
async fn served_log() -> (tempfile::TempDir, TestPdp, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;
    pdp.serve(addr).await;
    let log = open(config(dir.path()), addr).await;
    (dir, pdp, log)
}

async fn open(config: SpoolConfig, addr: SocketAddr) -> AuditLog {
    AuditLog::open(config, endpoint(addr).connect_lazy(), AGENT.into())
        .await
        .unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn as_set(v: &[(String, u64)]) -> BTreeSet<(String, u64)> {
    v.iter().cloned().collect()
}

/// Each session's events arrived in sequence order.
fn assert_in_order_per_session(stored: &[(String, u64)]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (s, n) in stored {
        let prev = last.insert(s, *n).unwrap_or(0);
        assert!(*n > prev, "{s}:{n} arrived after {s}:{prev}");
    }
}

#[tokio::test]
async fn events_reach_the_pdp_in_order_and_the_spool_is_trimmed() {
    let (dir, pdp, log) = served_log().await;

    let mut expected = Vec::new();
    for seq in 1..=100 {
        for s in ["a", "b", "c"] {
            log.record(event(s, seq)).await.unwrap();
            expected.push((s.to_owned(), seq));
        }
    }
    log.flush(FLUSH).await.unwrap();

    assert_eq!(
        pdp.stored(),
        expected,
        "every event, once, in recording order"
    );
    assert_eq!(pdp.agents(), BTreeSet::from([AGENT.to_owned()]));
    let backlog = log.backlog();
    assert_eq!(backlog.events, 0);
    assert_eq!(backlog.segments, 1, "only the active segment is left");
    assert_eq!(backlog.refused, 0);
    eventually("acknowledged segments deleted", || {
        segment_files(dir.path()).len() == 1
    })
    .await;
}

#[tokio::test]
async fn events_wait_while_the_pdp_is_down_then_flow() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;
    let log = open(config(dir.path()), addr).await;

    for seq in 1..=50 {
        log.record(event("s", seq)).await.unwrap();
    }
    sleep(Duration::from_millis(500)).await;
    assert_eq!(log.backlog().events, 50);
    assert!(log.accepting());
    assert!(log.flush(Duration::from_millis(50)).await.is_err());

    pdp.serve(addr).await;
    log.flush(FLUSH).await.unwrap();
    assert_eq!(pdp.stored(), ids("s", 1..=50));
    assert_eq!(log.backlog().events, 0);
}

#[tokio::test]
async fn a_killed_agent_resends_what_was_not_acked_and_nothing_is_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;

    // Run 1, PDP down: everything stays in the spool when the agent "dies".
    let log = open(config(dir.path()), addr).await;
    for seq in 1..=40 {
        log.record(event("s1", seq)).await.unwrap();
    }
    drop(log);

    // Run 2, PDP up: recovered events go first, new ones follow.
    pdp.serve(addr).await;
    let log = open(config(dir.path()), addr).await;
    assert_eq!(log.backlog().events, 40);
    for seq in 1..=20 {
        log.record(event("s2", seq)).await.unwrap();
    }
    // Run 2 dies with events in flight.
    for seq in 1..=300 {
        log.record(event("s3", seq)).await.unwrap();
    }
    drop(log);

    // Run 3 sends whatever was not acknowledged.
    let log = open(config(dir.path()), addr).await;
    for seq in 301..=310 {
        log.record(event("s3", seq)).await.unwrap();
    }
    log.flush(FLUSH).await.unwrap();

    let stored = pdp.stored();
    let mut expected = ids("s1", 1..=40);
    expected.extend(ids("s2", 1..=20));
    expected.extend(ids("s3", 1..=310));
    assert_eq!(stored.len(), expected.len(), "nothing stored twice");
    assert_eq!(as_set(&stored), as_set(&expected));
    assert_eq!(stored[..40], expected[..40], "recovered events first");
    assert!(
        log.shared.disk_reads.load(Ordering::Relaxed) > 0,
        "what a previous run left is read from disk"
    );
    assert_in_order_per_session(&stored);
    assert_eq!(log.backlog().events, 0);
    // Resent events are fine (the store is idempotent); count them for the
    // record.
    println!("duplicates received by the store: {}", pdp.duplicates());
}

#[tokio::test]
async fn a_torn_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;

    let log = open(config(dir.path()), addr).await;
    for seq in 1..=10 {
        log.record(event("s", seq)).await.unwrap();
    }
    drop(log);
    // The agent died halfway through writing an eleventh record.
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let good = std::fs::metadata(&files[0]).unwrap().len();
    let torn = frame::encode(&event("s", 11)).unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&files[0], &bytes).unwrap();

    let log = open(config(dir.path()), addr).await;
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good);
    assert_eq!(log.backlog().events, 10);
    // The session goes on from where the spool says it was.
    log.record(event("s", 11)).await.unwrap();
    pdp.serve(addr).await;
    log.flush(FLUSH).await.unwrap();
    assert_eq!(pdp.stored(), ids("s", 1..=11));
}

#[tokio::test]
async fn a_full_spool_refuses_then_recovers_when_acks_trim_it() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;
    let config = SpoolConfig {
        max_bytes: 16 * 1024,
        segment_bytes: 2048,
        ..SpoolConfig::new(dir.path())
    };
    let log = open(config, addr).await;

    let mut seq = 0;
    let error = loop {
        seq += 1;
        assert!(seq < 10_000, "the cap never bit");
        if let Err(e) = log.record(event("s", seq)).await {
            break e;
        }
    };
    assert!(
        matches!(error, AuditError::Full { max_bytes: 16384 }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("the audit spool is full"),
        "{error}"
    );
    assert_eq!(log.closed(), Some(Closed::Full));
    let backlog = log.backlog();
    assert_eq!(backlog.refused, 1);
    assert_eq!(backlog.events, seq - 1);
    assert!(backlog.bytes <= 16 * 1024);
    // Still full: the refused number is not consumed.
    assert!(log.record(event("s", seq)).await.is_err());

    pdp.serve(addr).await;
    log.flush(FLUSH).await.unwrap();
    eventually("room after acknowledgements", || log.accepting()).await;
    log.record(event("s", seq)).await.unwrap();
    log.flush(FLUSH).await.unwrap();
    assert_eq!(pdp.stored(), ids("s", 1..=seq));
}

/// A 4 KiB spool set to serve unaudited when full, its PDP away.
async fn small_spool_serving_when_full() -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let config = SpoolConfig {
        max_bytes: 4096,
        segment_bytes: 1024,
        on_full: OnFull::Allow,
        ..SpoolConfig::new(dir.path())
    };
    let log = open(config, addr).await;
    (dir, log)
}

#[tokio::test]
async fn on_full_allow_keeps_accepting_but_stores_nothing_more() {
    let (_dir, log) = small_spool_serving_when_full().await;
    let mut seq = 0;
    while log.record(event("s", seq + 1)).await.is_ok() {
        seq += 1;
        assert!(seq < 10_000);
    }
    assert!(log.accepting());
    assert_eq!(log.backlog().events, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_share_syncs_and_are_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;
    pdp.serve(addr).await;
    let log = open(SpoolConfig::new(dir.path()), addr).await;

    // 100 sessions at once, each recording its events in order.
    let tasks: Vec<_> = (0..100u64)
        .map(|s| {
            let log = log.clone();
            tokio::spawn(async move {
                for seq in 1..=10 {
                    log.record(event(&format!("s{s}"), seq)).await?;
                }
                Ok::<_, AuditError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let syncs = log.shared.syncs.load(Ordering::Relaxed);
    assert!(
        syncs < 1000,
        "{syncs} syncs for 1000 records: no group commit"
    );
    println!("1000 records, {syncs} fdatasyncs");

    log.flush(FLUSH).await.unwrap();
    // The stream kept up: it sent every event from memory.
    assert_eq!(log.shared.disk_reads.load(Ordering::Relaxed), 0);
    let stored = pdp.stored();
    let expected: Vec<_> = (0..100)
        .flat_map(|s| ids(&format!("s{s}"), 1..=10))
        .collect();
    assert_eq!(stored.len(), 1000);
    assert_eq!(as_set(&stored), as_set(&expected));
    assert_in_order_per_session(&stored);
}

#[tokio::test]
async fn the_largest_events_fit_the_pdp_message_limit() {
    // The test server keeps tonic's default 4 MiB decoding limit.
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let addr = free_addr().await;
    let log = open(SpoolConfig::new(dir.path()), addr).await;
    let sized = |seq, len| {
        let mut e = event("s", seq);
        if let Some(pb::audit_event::Event::Statement(s)) = &mut e.event {
            s.text = "x".repeat(len);
        }
        e
    };
    for seq in 1..=10 {
        log.record(sized(seq, 100_000)).await.unwrap();
    }
    log.record(sized(11, frame::MAX_PAYLOAD - 100))
        .await
        .unwrap();
    log.record(sized(12, 10)).await.unwrap();
    pdp.serve(addr).await;
    log.flush(FLUSH).await.unwrap();
    assert_eq!(pdp.stored(), ids("s", 1..=12));
}

#[tokio::test]
async fn a_balanced_channel_reaches_the_live_endpoint() {
    // What `PdpClient::channel` hands out for several endpoints.
    let dir = tempfile::tempdir().unwrap();
    let pdp = TestPdp::default();
    let dead = free_addr().await;
    let live = free_addr().await;
    pdp.serve(live).await;
    let channel =
        tonic::transport::Channel::balance_list([endpoint(dead), endpoint(live)].into_iter());
    let log = AuditLog::open(config(dir.path()), channel, AGENT.into())
        .await
        .unwrap();
    for seq in 1..=20 {
        log.record(event("s", seq)).await.unwrap();
    }
    log.flush(FLUSH).await.unwrap();
    assert_eq!(pdp.stored(), ids("s", 1..=20));
}

#[tokio::test]
async fn bad_events_and_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let bad = SpoolConfig {
        max_bytes: 150,
        segment_bytes: 100,
        ..SpoolConfig::new(dir.path())
    };
    let error = AuditLog::open(bad, endpoint(addr).connect_lazy(), AGENT.into())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`segment_bytes` is 100, below 1 KiB"),
        "{message}"
    );
    assert!(message.contains("at least twice"), "{message}");

    let log = open(config(dir.path()), addr).await;
    let error = log.record(event("s", 0)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid audit event: sequence numbers start at 1"
    );
    assert!(matches!(
        log.record(event("", 1)).await,
        Err(AuditError::InvalidEvent(_))
    ));
    assert_eq!(log.backlog().events, 0);
}

#[tokio::test]
async fn the_feed_numbers_each_sessions_events_without_gaps() {
    let (_dir, pdp, log) = served_log().await;
    let feed = Feed::start(log.clone());
    let (a, b) = (feed.sender("a"), feed.sender("b"));
    let unnumbered = |session: &str| event(session, 0);
    for i in 0..300 {
        a.send(unnumbered("a"));
        if i % 3 == 0 {
            b.send(unnumbered("b"));
        }
        if i == 150 {
            // Never storable: skipped, and its number goes to the next one.
            let mut huge = unnumbered("a");
            if let Some(pb::audit_event::Event::Statement(s)) = &mut huge.event {
                s.text = "x".repeat(frame::MAX_PAYLOAD + 1);
            }
            a.send(huge);
        }
    }
    // Not recorded while a session may still send.
    assert!(!feed.recorded(Duration::from_millis(100)).await);
    drop((a, b));
    assert!(feed.recorded(Duration::from_secs(10)).await);
    log.flush(Duration::from_secs(10)).await.unwrap();
    let stored = as_set(&pdp.stored());
    let expected: BTreeSet<_> = ids("a", 1..=300)
        .into_iter()
        .chain(ids("b", 1..=100))
        .collect();
    assert_eq!(stored, expected);
    assert_in_order_per_session(&pdp.stored());
}

/// Puts a directory where the spool's next segments would go, so rolling
/// over to a new segment fails as a full disk would; returns them.
fn block_next_segments(dir: &Path) -> Vec<PathBuf> {
    (1..=8)
        .map(|id| dir.join(spool::segment_name(id)))
        .filter(|path| !path.exists())
        .inspect(|path| std::fs::create_dir(path).unwrap())
        .collect()
}

#[tokio::test]
async fn a_batch_the_disk_refuses_midway_is_stored_from_where_it_stopped() {
    let (dir, pdp, log) = served_log().await;
    let blocked = block_next_segments(dir.path());
    let feed = Feed::start(log.clone());
    let session = feed.sender("s");
    // More than one 4 KiB segment holds: the write past the first fails.
    // More than one feed batch waits meanwhile.
    const EVENTS: u64 = 2500;
    for _ in 0..EVENTS {
        session.send(event("s", 0));
    }
    eventually("the spool to refuse", || !log.accepting()).await;
    // Durable: in the spool, or already at the PDP (see below).
    let durable = || log.backlog().events + pdp.stored().len() as u64;
    let before = durable();
    assert!((1..EVENTS).contains(&before), "{before} durable");
    // Closed while the feed holds events, however long it takes.
    sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(log.closed(), Some(Closed::Unwritable | Closed::CatchingUp)),
        "{:?}",
        log.closed()
    );

    for path in blocked {
        std::fs::remove_dir(path).unwrap();
    }
    eventually("the held events to be stored", || log.accepting()).await;
    // Open again only once nothing is held in memory: every event is in
    // the spool or already at the PDP (read in this order, an event moving
    // between the two is counted twice, never missed).
    let after = durable();
    assert!(after >= EVENTS, "open with only {after} events durable");
    drop(session);
    assert!(feed.recorded(FLUSH).await);
    log.flush(FLUSH).await.unwrap();
    // Every event once, in order: no gap where the write failed, and nothing
    // of the failed batch stored ahead of what came before it.
    assert_eq!(pdp.stored(), ids("s", 1..=EVENTS));
    assert_eq!(pdp.duplicates(), 0);
}

#[tokio::test]
async fn on_full_allow_the_feed_drops_what_does_not_fit_instead_of_holding_it() {
    let (_dir, log) = small_spool_serving_when_full().await;
    let feed = Feed::start(log.clone());
    let session = feed.sender("s");
    for _ in 0..500 {
        session.send(event("s", 0));
    }
    drop(session);
    // Nothing is held for a PDP that is away (memory would grow without end).
    assert!(feed.recorded(FLUSH).await);
    assert!(log.accepting());
    let backlog = log.backlog();
    assert!(backlog.events < 500, "{backlog:?}");
    assert!(backlog.refused >= 1, "{backlog:?}");
}
