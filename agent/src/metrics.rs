//! Prometheus-style counters and the tiny HTTP endpoint that serves them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::pdp::Effect;

/// Counters of the agent. Relaxed atomics: each is independent.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_total: AtomicU64,
    sessions_active: AtomicU64,
    sessions_refused: AtomicU64,
    statements_allowed: AtomicU64,
    statements_denied: AtomicU64,
    statements_held: AtomicU64,
    decision_seconds_sum_micros: AtomicU64,
    decisions_remote: AtomicU64,
    pdp_errors: AtomicU64,
    upstream_errors: AtomicU64,
    analyses_by_shape: AtomicU64,
}

impl Metrics {
    /// A session started.
    pub fn session_started(&self) {
        self.sessions_total.fetch_add(1, Relaxed);
        self.sessions_active.fetch_add(1, Relaxed);
    }
    /// A session ended.
    pub fn session_ended(&self) {
        self.sessions_active.fetch_sub(1, Relaxed);
    }
    /// A query string's analysis was reused from another of its shape.
    pub fn analysis_by_shape(&self) {
        self.analyses_by_shape.fetch_add(1, Relaxed);
    }
    /// A session was refused at connect.
    pub fn session_refused(&self) {
        self.sessions_refused.fetch_add(1, Relaxed);
    }
    /// A statement was decided.
    pub fn statement(&self, effect: Effect) {
        match effect {
            Effect::Allow => &self.statements_allowed,
            Effect::Deny => &self.statements_denied,
            Effect::RequireApproval => &self.statements_held,
        }
        .fetch_add(1, Relaxed);
    }
    /// A PDP round trip took this long.
    pub fn decision_latency(&self, d: Duration) {
        self.decisions_remote.fetch_add(1, Relaxed);
        self.decision_seconds_sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
    /// The PDP failed or timed out.
    pub fn pdp_error(&self) {
        self.pdp_errors.fetch_add(1, Relaxed);
    }
    /// The upstream database failed.
    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let v = |a: &AtomicU64| a.load(Relaxed);
        metric(
            "palisade_sessions_total",
            "counter",
            "Sessions opened.",
            &[(String::new(), v(&self.sessions_total))],
        );
        metric(
            "palisade_sessions_active",
            "gauge",
            "Sessions open now.",
            &[(String::new(), v(&self.sessions_active))],
        );
        metric(
            "palisade_sessions_refused_total",
            "counter",
            "Sessions refused at connect.",
            &[(String::new(), v(&self.sessions_refused))],
        );
        metric(
            "palisade_statements_total",
            "counter",
            "Statements by decision.",
            &[
                (
                    "{decision=\"allow\"}".to_owned(),
                    v(&self.statements_allowed),
                ),
                ("{decision=\"deny\"}".to_owned(), v(&self.statements_denied)),
                (
                    "{decision=\"require_approval\"}".to_owned(),
                    v(&self.statements_held),
                ),
            ],
        );
        let sum = v(&self.decision_seconds_sum_micros);
        let _ = writeln!(
            out,
            "# HELP palisade_decision_seconds PDP round trips.\n# TYPE palisade_decision_seconds summary\npalisade_decision_seconds_sum {}.{:06}\npalisade_decision_seconds_count {}",
            sum / 1_000_000,
            sum % 1_000_000,
            v(&self.decisions_remote)
        );
        let mut metric = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        metric(
            "palisade_analyses_by_shape_total",
            "Query strings whose analysis was reused from another differing only in literals.",
            v(&self.analyses_by_shape),
        );
        metric(
            "palisade_pdp_errors_total",
            "PDP calls that failed or timed out.",
            v(&self.pdp_errors),
        );
        metric(
            "palisade_upstream_errors_total",
            "Upstream connection failures.",
            v(&self.upstream_errors),
        );
        out
    }
}

/// Serves `GET /metrics` (any path) until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request)).await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
