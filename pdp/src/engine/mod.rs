//! Cedar evaluation: a session's principal and facts, scoped to one policy
//! snapshot, answering `connect`, `assume_role`, statements and `unmask`.
//!
//! One Cedar request per (action, relation) the statement touches; the
//! statement is allowed only if all are. Require-approval is a second pass
//! over the `@approval` forbids, run only when the base set allows, so an
//! approval policy can never make a refused statement approvable.

mod context;
mod evaluate;
pub mod latency;
mod requests;
mod slices;
mod types;
pub mod uid;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock};

use dashmap::DashMap;

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};
use palisade_sql::{Attributes, Relation};

pub use types::{
    ColumnMask, Effect, MaskMethod, Principal, SessionFacts, StatementVerdict, Verdict,
};

use crate::policy::PolicySnapshot;
use evaluate::Evaluator;
use slices::Slices;

/// How many statement decisions a scope remembers; past that the memory is
/// cleared and refilled. Keyed by attributes, whose normalized text has no
/// literals, so this counts statement shapes: a session rarely runs more, and
/// the bound keeps an idle session's memory small (well under 1 MiB).
const DECISION_CACHE_ENTRIES: usize = 512;

/// Why a scope could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The target is not described in `targets.toml`.
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    /// Cedar refused an entity or context built from the token's claims.
    #[error("cannot build the policy request: {0}")]
    Request(String),
}

/// A principal on a target under one policy snapshot. Built once per session
/// (and again when the snapshot changes); every decision of the session reuses
/// its entities.
pub struct Scope {
    snapshot: Arc<PolicySnapshot>,
    target: String,
    principal: EntityUid,
    session_record: RestrictedExpression,
    session_context: Context,
    /// Target entities plus the principal, its groups, and every table seen so
    /// far in this session (tables are added on first use).
    entities: RwLock<Entities>,
    /// Masks of the whole target, decided once per scope.
    masks: OnceLock<Arc<Vec<ColumnMask>>>,
    /// The policies this principal can meet, per action.
    slices: Slices,
    /// Statement decisions of this scope by their attributes: a decision is a
    /// function of the scope (principal, session facts, snapshot) and the
    /// attributes alone, so a repeated statement is answered from here.
    decided: DashMap<Attributes, StatementVerdict>,
}

impl Scope {
    /// Builds the scope of a session.
    pub fn new(
        snapshot: Arc<PolicySnapshot>,
        principal: &Principal,
        facts: &SessionFacts,
    ) -> Result<Self, EngineError> {
        if snapshot.target(&facts.target).is_none() {
            return Err(EngineError::UnknownTarget(facts.target.clone()));
        }
        let principal_uid = uid::user(&principal.id);
        let mut added: Vec<Entity> = principal
            .groups
            .iter()
            .map(|g| Entity::with_uid(uid::group(g)))
            .collect();
        let attrs = [
            (
                "issuer".to_owned(),
                RestrictedExpression::new_string(principal.issuer.clone()),
            ),
            (
                "subject".to_owned(),
                RestrictedExpression::new_string(principal.subject.clone()),
            ),
        ];
        let tags = principal
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
        let user = Entity::new_with_tags(
            principal_uid.clone(),
            attrs,
            principal.groups.iter().map(|g| uid::group(g)),
            tags,
        )
        .map_err(|e| EngineError::Request(e.to_string()))?;
        added.push(user);
        let entities = snapshot
            .entities
            .clone()
            .add_entities(added, None)
            .map_err(|e| EngineError::Request(e.to_string()))?;
        let session_record = context::session_record(facts);
        let session_context = context::session_context(&session_record)
            .map_err(|e| EngineError::Request(e.to_string()))?;
        let ancestors: HashSet<EntityUid> = entities
            .ancestors(&principal_uid)
            .map(|a| a.cloned().collect())
            .unwrap_or_default();
        let slices = Slices::new(&snapshot, principal_uid.clone(), ancestors);
        Ok(Self {
            snapshot,
            target: facts.target.clone(),
            principal: principal_uid,
            session_record,
            session_context,
            entities: RwLock::new(entities),
            masks: OnceLock::new(),
            slices,
            decided: DashMap::new(),
        })
    }

    /// The snapshot this scope decides with.
    pub fn snapshot(&self) -> &Arc<PolicySnapshot> {
        &self.snapshot
    }

    fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            snapshot: &self.snapshot,
            principal: &self.principal,
            slices: &self.slices,
        }
    }

    /// May the principal connect to the target?
    pub fn decide_connect(&self) -> Verdict {
        let entities = self.read_entities();
        self.evaluator().decide(
            &[(
                uid::action("connect"),
                uid::database(&self.target),
                "connect".into(),
            )],
            &self.session_context,
            &entities,
        )
    }

    /// The subset of `roles` the principal may assume on the target.
    pub fn decide_roles<'r>(&self, roles: &'r [String]) -> Vec<(&'r str, Verdict)> {
        let entities = self.read_entities();
        roles
            .iter()
            .map(|role| {
                let verdict = self.evaluator().decide(
                    &[(
                        uid::action("assume_role"),
                        uid::role(&self.target, role),
                        format!("role {role}"),
                    )],
                    &self.session_context,
                    &entities,
                );
                (role.as_str(), verdict)
            })
            .collect()
    }

    /// May the principal see the clear values of a column? A refusal names
    /// the masking method.
    pub fn decide_unmask(&self, schema: &str, table: &str, column: &str) -> Verdict {
        let column_uid = uid::column(&self.target, schema, table, column);
        let request = [(
            uid::action("unmask"),
            column_uid.clone(),
            format!("{schema}.{table}.{column}"),
        )];
        let entities = self.read_entities();
        if entities.get(&column_uid).is_some() {
            return self
                .evaluator()
                .decide(&request, &self.session_context, &entities);
        }
        // An unclassified column: policy still decides, over a column entity
        // with an empty classification.
        let attrs = [
            (
                "name".to_owned(),
                RestrictedExpression::new_string(column.to_owned()),
            ),
            (
                "classification".to_owned(),
                RestrictedExpression::new_string(String::new()),
            ),
        ];
        let parents = [uid::table(&self.target, schema, table)];
        let with_column = Entity::new_with_tags(column_uid, attrs, parents, [])
            .map_err(|e| e.to_string())
            .and_then(|e| {
                entities
                    .clone()
                    .add_entities([e], None)
                    .map_err(|e| e.to_string())
            });
        match with_column {
            Ok(extended) => self
                .evaluator()
                .decide(&request, &self.session_context, &extended),
            Err(e) => StatementVerdict::deny_error(format!("cannot evaluate unmask: {e}")).verdict,
        }
    }

    /// Decides one statement, with the masks its results need. A statement
    /// this scope has decided before is answered from memory.
    pub fn decide_statement(&self, attributes: &Attributes) -> StatementVerdict {
        if let Some(hit) = self.decided.get(attributes) {
            return hit.clone();
        }
        let verdict = self.decide_statement_uncached(attributes);
        if self.decided.len() >= DECISION_CACHE_ENTRIES {
            self.decided.clear();
        }
        self.decided.insert(attributes.clone(), verdict.clone());
        verdict
    }

    /// Decides one statement with Cedar, without looking at or filling the
    /// scope's memory of decisions (benchmarks measure evaluation with it).
    pub fn decide_statement_uncached(&self, attributes: &Attributes) -> StatementVerdict {
        self.ensure_tables(attributes);
        let filtered = self.filtered_classifications(attributes);
        let copied = self.copied_classifications(attributes);
        let context = match context::statement_context(
            &self.session_record,
            attributes,
            &filtered,
            &copied,
        ) {
            Ok(c) => c,
            Err(e) => {
                return StatementVerdict::deny_error(format!(
                    "the statement could not be put to policy: {e}"
                ));
            }
        };
        let requests = requests::for_statement(&self.target, attributes);
        let verdict = {
            let entities = self.read_entities();
            self.evaluator().decide(&requests, &context, &entities)
        };
        let masks = if verdict.effect == Effect::Deny {
            Arc::default()
        } else {
            self.masks()
        };
        StatementVerdict { verdict, masks }
    }

    fn read_entities(&self) -> std::sync::RwLockReadGuard<'_, Entities> {
        // A poisoned lock only means another decision panicked mid-update of
        // the table cache; the entities themselves are immutable values.
        self.entities
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the tables (and their schemas) a statement touches, so `resource in
    /// Schema::"…"` holds for them.
    fn ensure_tables(&self, attributes: &Attributes) {
        let missing: Vec<&Relation> = {
            let entities = self.read_entities();
            attributes
                .reads
                .iter()
                .chain(&attributes.writes)
                .filter(|r| {
                    entities
                        .get(&uid::table(&self.target, &r.schema, &r.name))
                        .is_none()
                })
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let mut entities = self
            .entities
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut added = Vec::new();
        for r in missing {
            let table = uid::table(&self.target, &r.schema, &r.name);
            if entities.get(&table).is_some() || added.iter().any(|e: &Entity| e.uid() == table) {
                continue;
            }
            let schema = uid::schema(&self.target, &r.schema);
            if entities.get(&schema).is_none() && !added.iter().any(|e: &Entity| e.uid() == schema)
            {
                let attrs = [(
                    "name".to_owned(),
                    RestrictedExpression::new_string(r.schema.clone()),
                )];
                if let Ok(e) =
                    Entity::new_with_tags(schema.clone(), attrs, [uid::database(&self.target)], [])
                {
                    added.push(e);
                }
            }
            let attrs = [
                (
                    "name".to_owned(),
                    RestrictedExpression::new_string(r.name.clone()),
                ),
                (
                    "schema".to_owned(),
                    RestrictedExpression::new_string(r.schema.clone()),
                ),
            ];
            if let Ok(e) = Entity::new_with_tags(table, attrs, [schema], []) {
                added.push(e);
            }
        }
        let current = std::mem::replace(&mut *entities, Entities::empty());
        match current.clone().add_entities(added, None) {
            Ok(updated) => *entities = updated,
            // Without the table entity `resource in Schema` is false: permits
            // cannot match, so the statement is refused (fail closed).
            Err(_) => *entities = current,
        }
    }

    /// Classifications of the columns a statement filters, sorts, groups or
    /// aggregates on. An unresolved column counts for every read table that
    /// has a classified column of that name.
    fn filtered_classifications(&self, attributes: &Attributes) -> Vec<String> {
        let Some(target) = self.snapshot.target(&self.target) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in &attributes.filtered_columns {
            let candidates: Vec<&Relation> = match &c.relation {
                Some(r) => vec![r],
                None => attributes.reads.iter().collect(),
            };
            for r in candidates {
                if let Some(cols) = target.classified.get(&(r.schema.clone(), r.name.clone())) {
                    out.extend(
                        cols.iter()
                            .filter(|k| k.column == c.column)
                            .map(|k| k.classification.clone()),
                    );
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Classifications of the classified columns of relations a statement
    /// reads while it writes elsewhere or creates something (`INSERT …
    /// SELECT`, `CREATE TABLE … AS`, `CREATE VIEW`): values that would leave
    /// their column, and with it their masking.
    fn copied_classifications(&self, attributes: &Attributes) -> Vec<String> {
        if attributes.writes.is_empty() && !attributes.is_ddl {
            return Vec::new();
        }
        let Some(target) = self.snapshot.target(&self.target) else {
            return Vec::new();
        };
        let mut out: Vec<String> = attributes
            .reads
            .iter()
            .filter(|r| !attributes.writes.contains(r))
            .filter_map(|r| target.classified.get(&(r.schema.clone(), r.name.clone())))
            .flatten()
            .map(|c| c.classification.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The classified columns of the target this principal may not see, and
    /// how each is masked. `unmask` is decided in the session's context, so
    /// once per scope (a policy change makes a new scope).
    pub fn masks(&self) -> Arc<Vec<ColumnMask>> {
        self.masks
            .get_or_init(|| {
                let mut masks = Vec::new();
                let Some(target) = self.snapshot.target(&self.target) else {
                    return Arc::new(masks);
                };
                let mut tables: Vec<_> = target.classified.iter().collect();
                tables.sort_by(|a, b| a.0.cmp(b.0));
                for ((schema, table), columns) in tables {
                    for c in columns {
                        let verdict = self.decide_unmask(schema, table, &c.column);
                        if verdict.effect == Effect::Allow {
                            continue;
                        }
                        let method = verdict
                            .policies
                            .iter()
                            .find_map(|p| {
                                self.snapshot
                                    .meta(&cedar_policy::PolicyId::new(p))
                                    .and_then(|m| m.mask)
                            })
                            .unwrap_or(MaskMethod::Redact);
                        masks.push(ColumnMask {
                            schema: schema.clone(),
                            table: table.clone(),
                            column: c.column.clone(),
                            classification: c.classification.clone(),
                            method,
                            policy_id: verdict.policies.first().cloned().unwrap_or_default(),
                        });
                    }
                }
                Arc::new(masks)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn snapshot() -> Arc<PolicySnapshot> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        Arc::new(crate::policy::load_dir(&dir).unwrap_or_else(|p| panic!("{p:?}")))
    }

    fn principal(groups: &[&str]) -> Principal {
        Principal {
            id: "https://issuer.example|someone".into(),
            issuer: "https://issuer.example".into(),
            subject: "someone".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            claims: [("repository".to_owned(), "acme/app".to_owned())].into(),
        }
    }

    const STATEMENTS: &[&str] = &[
        "SELECT id, total FROM orders WHERE id = 7",
        "SELECT r.day, o.total FROM reporting.daily r JOIN public.orders o ON o.day = r.day",
        "UPDATE orders SET total = 0 WHERE id = 1",
        "UPDATE orders SET total = 0",
        "DELETE FROM migrations_tmp.backfill",
        "DELETE FROM orders",
        "CREATE TABLE migrations_tmp.t (id int)",
        "CREATE TABLE migrations_tmp.t AS SELECT * FROM customers",
        "DROP TABLE orders",
        "TRUNCATE reporting.daily",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM customers",
        "SELECT * FROM customers WHERE ssn = '1'",
        "INSERT INTO migrations_tmp.x SELECT * FROM customers",
        "COPY orders TO PROGRAM 'cat'",
        "DO $$ BEGIN END $$",
        "GRANT SELECT ON orders TO bob",
        "SET search_path = public",
        "BEGIN",
        "VACUUM orders",
    ];

    /// Slicing by principal, skipping the approval pass and remembering
    /// decisions change no answer: compared with the unsliced two-pass
    /// evaluation, for principals of every example group and of none.
    #[test]
    fn fast_paths_decide_as_the_reference_evaluation() {
        let snapshot = snapshot();
        for target in ["prod", "staging"] {
            let facts = SessionFacts {
                target: target.into(),
                application_name: "psql".into(),
                client_address: "127.0.0.1:5000".into(),
                database_user: "u".into(),
                tls: true,
            };
            for groups in [
                &["ci-generated-code"][..],
                &["dba"],
                &["ci-generated-code", "dba"],
                &[],
                &["someone-else"],
            ] {
                let who = principal(groups);
                let fast = Scope::new(snapshot.clone(), &who, &facts).unwrap();
                let mut reference = Scope::new(snapshot.clone(), &who, &facts).unwrap();
                reference.slices = Slices::disabled(reference.principal.clone());
                assert_eq!(fast.decide_connect(), reference.decide_connect());
                let roles = ["palisade_ci_reader".to_owned(), "other".to_owned()];
                assert_eq!(fast.decide_roles(&roles), reference.decide_roles(&roles));
                for sql in STATEMENTS {
                    for s in palisade_sql::analyze(sql, &["public"]).unwrap() {
                        let want = reference.decide_statement_uncached(&s.attributes);
                        let got = fast.decide_statement_uncached(&s.attributes);
                        assert_eq!(got, want, "{sql} as {groups:?} on {target}");
                        // Twice through the memory: the miss and the hit.
                        assert_eq!(fast.decide_statement(&s.attributes), want, "{sql}");
                        assert_eq!(fast.decide_statement(&s.attributes), want, "{sql}");
                    }
                }
                assert_eq!(fast.masks(), reference.masks());
            }
        }
    }
}
