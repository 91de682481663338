//! Deciding each statement of a session: analysis (cached by exact text),
//! decisions (cached per statement attributes for as long as the PDP allows
//! and until the policy set changes), and SQL-level prepared statements.
//!
//! Decisions are values: [`Verdict::Forward`] or [`Verdict::Refuse`]; the
//! session carries them out. Any PDP error or timeout is a refusal.

mod cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use palisade_sql::{Attributes, Statement};
use tracing::{debug, warn};

use crate::SessionMap as HashMap;
use crate::error::sqlstate;
use crate::metrics::Metrics;
use crate::pdp::{Decision, Effect, PdpClient, PdpError};
pub use cache::DecisionCache;

/// A refusal as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE.
    pub code: &'static str,
    /// The message (names the policy and the reason).
    pub message: String,
    /// More detail, if any.
    pub detail: Option<String>,
    /// The policies that refused (for the audit trail).
    pub policies: Vec<String>,
    /// Whether policy asked for a review (rather than refusing outright).
    pub held: bool,
    /// For a held statement: the columns to mask once it is approved.
    pub masks: Arc<Vec<crate::pdp::Mask>>,
}

impl Refusal {
    /// A refusal that no policy determined (unparsable, PDP down, ...).
    pub fn plain(code: &'static str, message: String, detail: Option<String>) -> Self {
        Self {
            code,
            message,
            detail,
            policies: Vec::new(),
            held: false,
            masks: Arc::default(),
        }
    }
}

/// How an allowed statement was decided, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// The policies that permitted it (shared: a note is copied for every
    /// execution of a prepared statement).
    pub policies: Arc<[String]>,
    /// Whether the decision came from the cache.
    pub cached: bool,
    /// The approval that released it, for a held statement a reviewer approved.
    pub approval_id: Option<String>,
    /// Columns policy masks for this principal (sorted; empty: none).
    pub masks: Arc<Vec<crate::pdp::Mask>>,
    /// The policy version the decision was made under and until when the
    /// PDP allowed reusing it; `None`: it must be decided again.
    pub reusable: Option<(u64, Instant)>,
}

impl Note {
    /// Whether the decision still stands without asking again.
    fn fresh(&self, version: u64, now: Instant) -> bool {
        self.reusable
            .is_some_and(|(v, until)| v == version && now < until)
    }
}

/// What to do with a query string or a Parse.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it; the statements as analysed, with how each was decided.
    Forward(Arc<Vec<Statement>>, Vec<Note>),
    /// Refuse it; nothing of it reaches the database. The statements as
    /// analysed, unless the text did not parse.
    Refuse(Refusal, Option<Arc<Vec<Statement>>>),
}

/// The policy version last reported by the PDP, shared by all sessions of
/// the agent so any session's answer invalidates every cache (a lock-free
/// read per statement).
#[derive(Debug, Default)]
pub struct PolicyVersion(AtomicU64);

impl PolicyVersion {
    /// Records a version string (hex); returns its numeric form.
    pub fn observe(&self, version: &str) -> u64 {
        let v = u64::from_str_radix(version.get(..16).unwrap_or(version), 16).unwrap_or(0);
        self.0.store(v, Ordering::Relaxed);
        v
    }

    /// The current version.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Re-opens a session at the PDP under the same id (after a PDP restart).
pub type Reopen =
    Box<dyn Fn() -> futures::future::BoxFuture<'static, Result<String, PdpError>> + Send + Sync>;

/// Largest number of distinct query texts whose analysis a session keeps.
const ANALYSIS_CACHE_ENTRIES: usize = 512;

/// Rounds of deciding one text while the policy version keeps changing
/// under it (see [`Enforcer::decide`]).
const DECIDE_ATTEMPTS: usize = 3;

/// Query strings at least this long are parsed on a blocking thread. A
/// session thread serves many sessions without stealing between threads
/// (see [`crate::threads`]); parsing takes about 0.25 µs a byte, so a
/// migration script would otherwise stall its neighbours for milliseconds.
const BLOCKING_ANALYSIS_BYTES: usize = 4 * 1024;

/// A query text analysed before.
#[derive(Debug)]
struct Analysed {
    statements: Arc<Vec<Statement>>,
    /// How each statement was last allowed, when reusing that needs no
    /// more than the notes being fresh (see [`Enforcer::allowed_before`]).
    allowed: Option<Vec<Note>>,
}

/// The per-session enforcement state. Owned by the session's client-reading
/// task: nothing here is shared with other sessions except the PDP client,
/// the policy version and the metrics.
pub struct Enforcer {
    pdp: PdpClient,
    session_id: String,
    search_path: Vec<String>,
    /// Analyses by exact text, with how the text was last allowed.
    analyses: HashMap<String, Analysed>,
    /// Analyses by literal shape, for strings that differ only in literals
    /// (values sent inline); see [`palisade_sql::literal_shape`].
    shapes: HashMap<String, Arc<Vec<Statement>>>,
    decisions: DecisionCache,
    version: Arc<PolicyVersion>,
    metrics: Arc<Metrics>,
    /// The role the session runs as upstream (for `$user` in search paths).
    database_user: String,
    /// SQL-level `PREPARE name AS ...`: what `EXECUTE name` will run.
    sql_prepared: HashMap<String, Arc<Attributes>>,
    /// Re-opens the PDP session when the PDP forgot it (restart).
    reopen: Reopen,
}

impl Enforcer {
    /// A session's enforcer.
    pub fn new(
        pdp: PdpClient,
        session_id: String,
        version: Arc<PolicyVersion>,
        metrics: Arc<Metrics>,
        database_user: String,
        reopen: Reopen,
    ) -> Self {
        Self {
            database_user,
            pdp,
            session_id,
            search_path: vec!["public".to_owned()],
            analyses: HashMap::default(),
            shapes: HashMap::default(),
            decisions: DecisionCache::default(),
            version,
            metrics,
            sql_prepared: HashMap::default(),
            reopen,
        }
    }

    /// The PDP session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The PDP client (approvals are asked for through it).
    pub fn pdp(&self) -> &PdpClient {
        &self.pdp
    }

    async fn analyze(&mut self, sql: &str) -> Result<Arc<Vec<Statement>>, Refusal> {
        if let Some(a) = self.analyses.get(sql) {
            return Ok(a.statements.clone());
        }
        let shape = palisade_sql::literal_shape(sql);
        if let Some(key) = &shape
            && let Some(exemplar) = self.shapes.get(key)
            && let [only] = exemplar.as_slice()
            && let Some(text) = palisade_sql::single_statement_text(sql)
        {
            self.metrics.analysis_by_shape();
            return Ok(Arc::new(vec![only.with_text(text)]));
        }
        let analysed = if sql.len() >= BLOCKING_ANALYSIS_BYTES {
            let (text, path) = (sql.to_owned(), self.search_path.clone());
            crate::threads::offload(move || analyze_on(&text, &path))
                .await
                .unwrap_or(Err(palisade_sql::AnalyzeError::Internal))
        } else {
            analyze_on(sql, &self.search_path)
        };
        let statements = analysed.map_err(|e| {
            Refusal::plain(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("palisade: statement refused: it does not parse ({e})"),
                None,
            )
        })?;
        let statements = Arc::new(statements);
        if let Some(key) = shape
            && let [only] = statements.as_slice()
            && only.shape_reusable()
        {
            if self.shapes.len() >= ANALYSIS_CACHE_ENTRIES {
                self.shapes.clear();
            }
            self.shapes.insert(key, statements.clone());
            // Strings of a reusable shape are found by their shape: keeping
            // each text too would only churn the exact-text cache.
            return Ok(statements);
        }
        if self.analyses.len() >= ANALYSIS_CACHE_ENTRIES {
            self.analyses.clear();
        }
        self.analyses.insert(
            sql.to_owned(),
            Analysed {
                statements: statements.clone(),
                allowed: None,
            },
        );
        Ok(statements)
    }

    /// Decides a query string (simple protocol) or the text of a Parse.
    /// Every statement is decided; if any is refused, none runs.
    pub async fn check(&mut self, sql: &str) -> Verdict {
        if let Some(verdict) = self.allowed_before(sql) {
            return verdict;
        }
        let statements = match self.analyze(sql).await {
            Ok(s) => s,
            Err(r) => {
                self.metrics.statement(Effect::Deny);
                return Verdict::Refuse(r, None);
            }
        };
        // What each statement is decided as: EXECUTE runs what was prepared.
        // Shared with the (cached) analysis or the prepared statement.
        let mut decided: Vec<Arc<Attributes>> = Vec::with_capacity(statements.len());
        for s in statements.iter() {
            if let Some(name) = &s.sql_execute {
                match self.sql_prepared.get(name) {
                    Some(a) => decided.push(a.clone()),
                    None => {
                        self.metrics.statement(Effect::Deny);
                        return Verdict::Refuse(
                            Refusal::plain(
                                sqlstate::INSUFFICIENT_PRIVILEGE,
                                format!(
                                    "palisade: statement refused: prepared statement `{name}` was not prepared through this session"
                                ),
                                None,
                            ),
                            Some(statements.clone()),
                        );
                    }
                }
            } else {
                decided.push(s.attributes.clone());
            }
        }
        match self.decide(&decided).await {
            Err(r) => {
                self.metrics.statement(if r.held {
                    Effect::RequireApproval
                } else {
                    Effect::Deny
                });
                Verdict::Refuse(r, Some(statements))
            }
            Ok(notes) => {
                for (s, a) in statements.iter().zip(&decided) {
                    self.note_allowed(s, a);
                }
                for _ in statements.iter() {
                    self.metrics.statement(Effect::Allow);
                }
                self.remember_allowed(sql, &statements, &notes);
                Verdict::Forward(statements, notes)
            }
        }
    }

    /// A text allowed before whose decisions all still stand: allowed again
    /// without deciding, as a prepared statement bound again is (see
    /// [`Self::recheck`]). Drivers that use the unnamed statement send the
    /// same Parse for every execution; this makes that one lookup.
    ///
    /// Notes that are no longer fresh are dropped: the text is decided again
    /// and remembered only if allowed again, so an older verdict never
    /// comes back (a policy version can recur when an edit is reverted).
    fn allowed_before(&mut self, sql: &str) -> Option<Verdict> {
        let analysed = self.analyses.get_mut(sql)?;
        let notes = analysed.allowed.as_ref()?;
        if !all_fresh(&self.version, notes) {
            analysed.allowed = None;
            return None;
        }
        for _ in notes {
            self.metrics.statement(Effect::Allow);
        }
        Some(Verdict::Forward(analysed.statements.clone(), notes.clone()))
    }

    /// Keeps how `sql` was allowed for [`Self::allowed_before`], when its
    /// analysis is cached by exact text and allowing it again changes
    /// nothing else: no statement has a session effect the enforcer follows
    /// (`PREPARE`, `EXECUTE`, `DEALLOCATE`, a search path), which
    /// [`Self::note_allowed`] must see each time.
    fn remember_allowed(&mut self, sql: &str, statements: &Arc<Vec<Statement>>, notes: &[Note]) {
        let stateless = statements.iter().all(Statement::follows_no_session_state);
        let reusable = notes.iter().all(|n| n.reusable.is_some());
        if !stateless || !reusable || notes.len() != statements.len() {
            return;
        }
        if let Some(analysed) = self.analyses.get_mut(sql)
            && Arc::ptr_eq(&analysed.statements, statements)
        {
            // Kept as the next run will report them: decided before.
            let again = notes.iter().map(|n| Note {
                cached: true,
                ..n.clone()
            });
            analysed.allowed = Some(again.collect());
        }
    }

    /// Re-checks attributes already decided (a prepared statement bound again
    /// after the policy set changed); a cache hit costs no round trip.
    pub async fn recheck(
        &mut self,
        statements: &[Statement],
        notes: &[Note],
    ) -> Result<(), Refusal> {
        // Binding a prepared statement again and again is the hot path of
        // drivers that prepare: while its decision stands, nothing to do.
        if notes.len() == statements.len() && all_fresh(&self.version, notes) {
            return Ok(());
        }
        let attributes: Vec<Arc<Attributes>> =
            statements.iter().map(|s| s.attributes.clone()).collect();
        self.decide(&attributes).await.map(|_| ())
    }

    fn note_allowed(&mut self, statement: &Statement, attributes: &Arc<Attributes>) {
        if let Some(name) = &statement.sql_prepare {
            self.sql_prepared.insert(name.clone(), attributes.clone());
        }
        match &statement.sql_deallocate {
            Some(Some(name)) => {
                self.sql_prepared.remove(name);
            }
            Some(None) => self.sql_prepared.clear(),
            None => {}
        }
        if let Some(path) = &statement.sets_search_path {
            // The analysis of later statements resolves names against the
            // new path; cached analyses used the old one.
            // `$user` is the schema named after the database role the
            // session runs as upstream.
            self.search_path = if path.is_empty() {
                vec!["public".to_owned()]
            } else {
                path.iter()
                    .map(|s| {
                        if s == "$user" {
                            self.database_user.clone()
                        } else {
                            s.clone()
                        }
                    })
                    .collect()
            };
            self.analyses.clear();
            self.shapes.clear();
        }
    }

    /// Decides every statement; `Err` is the first refusal.
    ///
    /// Decisions from the cache were made under the policy version current
    /// when they were looked up. If asking the PDP about the others reveals
    /// a newer version, those hits are stale: the statements are decided
    /// again (the hits then miss), a few times at most while the version
    /// keeps moving, then refused.
    async fn decide(&mut self, statements: &[Arc<Attributes>]) -> Result<Vec<Note>, Refusal> {
        for _ in 0..DECIDE_ATTEMPTS {
            if let Some(notes) = self.decide_once(statements).await? {
                return Ok(notes);
            }
        }
        Err(Refusal::plain(
            sqlstate::SYSTEM_ERROR,
            "palisade: statement refused: the policy changed while it was being decided; try again"
                .to_owned(),
            None,
        ))
    }

    /// One round of [`Self::decide`]; `None` when a cache hit turned out to
    /// be from an older policy version than the PDP's answer.
    async fn decide_once(
        &mut self,
        statements: &[Arc<Attributes>],
    ) -> Result<Option<Vec<Note>>, Refusal> {
        let looked_up = self.version.current();
        let mut version = looked_up;
        let mut missing: Vec<&Attributes> = Vec::new();
        let mut decisions: Vec<Option<Arc<Decision>>> = Vec::with_capacity(statements.len());
        // Until when each decision may be reused; `None` for a fresh one
        // (then it is the PDP's ttl from now).
        let mut cached: Vec<Option<Instant>> = Vec::with_capacity(statements.len());
        for a in statements {
            let hit = self.decisions.get(a, version);
            cached.push(hit.as_ref().map(|(_, until)| *until));
            if hit.is_none() {
                missing.push(&**a);
            }
            decisions.push(hit.map(|(d, _)| d));
        }
        if !missing.is_empty() {
            let started = Instant::now();
            let answer = match self.pdp.decide(&self.session_id, &missing).await {
                Err(PdpError::UnknownSession) => {
                    warn!(session = %self.session_id, "the pdp forgot the session; re-opening it");
                    match (self.reopen)().await {
                        Ok(id) => {
                            self.session_id = id;
                            self.pdp.decide(&self.session_id, &missing).await
                        }
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            self.metrics.decision_latency(started.elapsed());
            let (fresh, version_str) = answer.map_err(|e| {
                self.metrics.pdp_error();
                warn!(session = %self.session_id, error = %e, "decision unavailable; refusing");
                Refusal::plain(
                    sqlstate::SYSTEM_ERROR,
                    format!("palisade: statement refused: {e}"),
                    Some("the agent refuses statements it cannot put to policy".to_owned()),
                )
            })?;
            version = self.version.observe(&version_str);
            let mut fresh = fresh.into_iter();
            let stale_hits = version != looked_up && cached.iter().any(Option::is_some);
            for (slot, a) in decisions.iter_mut().zip(statements) {
                if slot.is_none() {
                    let d = fresh.next().map(Arc::new);
                    if let Some(d) = &d {
                        self.decisions.put(Arc::clone(a), Arc::clone(d), version);
                    }
                    *slot = d;
                }
            }
            if stale_hits {
                return Ok(None);
            }
        }
        let mut notes = Vec::with_capacity(statements.len());
        for ((d, a), cached) in decisions.iter().zip(statements).zip(cached) {
            let Some(d) = d else {
                return Err(Refusal::plain(
                    sqlstate::SYSTEM_ERROR,
                    "palisade: statement refused: no decision".to_owned(),
                    None,
                ));
            };
            match d.effect {
                Effect::Allow => {}
                Effect::Deny => {
                    debug!(session = %self.session_id, kind = a.kind.as_str(), policies = ?d.policies, "statement refused");
                    return Err(refusal(d, "refused"));
                }
                Effect::RequireApproval => {
                    return Err(refusal(d, "held for review"));
                }
            }
            let until = cached.or_else(|| (!d.ttl.is_zero()).then(|| Instant::now() + d.ttl));
            notes.push(Note {
                policies: d.policies.clone(),
                cached: cached.is_some(),
                approval_id: None,
                masks: d.masks.clone(),
                reusable: until.map(|u| (version, u)),
            });
        }
        Ok(Some(notes))
    }
}

/// Whether every decision in `notes` still stands under the current
/// policy version.
fn all_fresh(version: &PolicyVersion, notes: &[Note]) -> bool {
    let (version, now) = (version.current(), Instant::now());
    notes.iter().all(|n| n.fresh(version, now))
}

fn refusal(d: &Decision, what: &str) -> Refusal {
    let mut message = format!("palisade: statement {what}");
    if !d.policies.is_empty() {
        message.push_str(" by policy ");
        message.push_str(&d.policies.join(", "));
    }
    if !d.reason.is_empty() {
        message.push_str(": ");
        message.push_str(&d.reason);
    }
    let detail = if d.effect == Effect::RequireApproval {
        Some(format!(
            "this statement needs the approval of: {}; an approval covers one execution",
            d.reviewers.join(", ")
        ))
    } else {
        None
    };
    Refusal {
        code: sqlstate::INSUFFICIENT_PRIVILEGE,
        message,
        detail,
        policies: d.policies.to_vec(),
        held: d.effect == Effect::RequireApproval,
        masks: d.masks.clone(),
    }
}

/// Analyses `sql` with `search_path` as the session's search path.
fn analyze_on(
    sql: &str,
    search_path: &[String],
) -> Result<Vec<Statement>, palisade_sql::AnalyzeError> {
    let path: Vec<&str> = search_path.iter().map(String::as_str).collect();
    palisade_sql::analyze(sql, &path)
}
