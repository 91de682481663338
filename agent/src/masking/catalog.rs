//! Where masked columns live in a target's catalog.
//!
//! Policy names masked columns as `schema.table.column`; result rows name
//! their origin by table OID and attribute number (RowDescription), and views
//! reach masked columns under other names. A [`Catalog`] resolves the first
//! into the second over its own connection to the target, and follows every
//! view (and view over a view) that reads a masked table, tracing each view
//! column through the view's definition with the same lineage analysis the
//! agent applies to statements.
//!
//! Snapshots are cached per set of masks (every non-exempt principal usually
//! has the same set) and reloaded when DDL passes through any session of
//! the target, or when they grow older than the configured age.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_sql::{Lineage, Relation, SourceColumn};
use tokio_postgres::types::Oid;

use super::MaskMethod;

/// How long a connect or a catalog query may take.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(10);

/// A masked column as policy names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaskedColumn {
    /// Schema.
    pub schema: String,
    /// Table (or view).
    pub table: String,
    /// Column.
    pub column: String,
    /// How policy masks it.
    pub method: MaskMethod,
}

/// Why masks could not be resolved; statements needing them are refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No connection to the target.
    #[error("cannot reach the database catalog: {0}")]
    Connect(String),
    /// A catalog query failed.
    #[error("catalog query failed: {0}")]
    Query(String),
    /// A connect or query took too long.
    #[error("the database catalog did not answer within {0:?}")]
    Timeout(Duration),
}

/// How the masked columns of a target appear in its catalog, for one set of
/// masks.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Result-column origins (table OID, attribute number) that are masked:
    /// the masked columns themselves, and view columns derived from them.
    by_origin: HashMap<(Oid, i16), MaskMethod>,
    /// Relations (tables and views) with a masked column, by name.
    relations: HashMap<Relation, RelationColumns>,
    /// Masked column names, for references no relation could be given for.
    by_name: HashMap<String, MaskMethod>,
    /// Names of the functions in `pg_catalog`; any other function may read
    /// a masked table inside its body, out of the lineage's sight. `None`
    /// (a snapshot built without a catalog): no function is suspect.
    builtins: Option<HashSet<String>>,
}

/// The columns of a relation with at least one masked column, in order.
#[derive(Debug, Default)]
struct RelationColumns {
    columns: Vec<(String, Option<MaskMethod>)>,
}

impl RelationColumns {
    fn strictest(&self) -> Option<MaskMethod> {
        self.columns
            .iter()
            .filter_map(|(_, m)| *m)
            .reduce(MaskMethod::stricter)
    }
}

impl MaskMethod {
    /// The method for a value computed from values masked with `self` and
    /// `other`.
    fn stricter(self, other: Self) -> Self {
        if self == Self::Null || other == Self::Null {
            Self::Null
        } else {
            Self::Redact
        }
    }

    /// The method for a value computed from a value masked with `self`: a
    /// partial mask (last four, domain, hash) of a derived value could reveal
    /// more than the policy allows (`substr(card, 1, 6)` then `last4`), so
    /// derived values are redacted whole, or stay NULL.
    pub fn derived(self) -> Self {
        if self == Self::Null {
            Self::Null
        } else {
            Self::Redact
        }
    }
}

impl Snapshot {
    /// A snapshot without a catalog: only name-based matching (tests).
    pub fn from_names(masks: &[MaskedColumn]) -> Self {
        let mut s = Self::default();
        for m in masks {
            s.add_name(m);
        }
        s
    }

    fn add_name(&mut self, m: &MaskedColumn) {
        let relation = Relation {
            schema: m.schema.clone(),
            name: m.table.clone(),
        };
        let columns = &mut self.relations.entry(relation).or_default().columns;
        match columns.iter_mut().find(|(c, _)| *c == m.column) {
            Some((_, method)) => *method = Some(m.method),
            None => columns.push((m.column.clone(), Some(m.method))),
        }
        self.by_name
            .entry(m.column.clone())
            .and_modify(|e| *e = e.stricter(m.method))
            .or_insert(m.method);
    }

    /// Marks a result-column origin as masked (tests and fuzz targets build
    /// snapshots without a database).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn with_origin(mut self, table_oid: Oid, attnum: i16, method: MaskMethod) -> Self {
        self.by_origin.insert((table_oid, attnum), method);
        self
    }

    /// Whether calling `function` (as the statement names it, maybe
    /// schema-qualified) could return values the lineage cannot see: a
    /// function outside `pg_catalog`, whose body may read any table.
    pub fn opaque_function(&self, function: &str) -> bool {
        let Some(builtins) = &self.builtins else {
            return false;
        };
        match function.rsplit_once('.') {
            Some((schema, name)) => schema != "pg_catalog" || !builtins.contains(name),
            None => !builtins.contains(function),
        }
    }

    /// Whether the snapshot masks anything.
    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty() && self.by_name.is_empty()
    }

    /// The masking of a result column whose origin the database reported.
    pub fn origin(&self, table_oid: Oid, attnum: i16) -> Option<MaskMethod> {
        self.by_origin.get(&(table_oid, attnum)).copied()
    }

    /// The masking of a value that flows from `source`, as a source of
    /// computed values.
    pub fn source(&self, source: &SourceColumn) -> Option<MaskMethod> {
        match (&source.relation, &source.column) {
            (Some(r), Some(c)) => self
                .relations
                .get(r)
                .and_then(|rel| rel.columns.iter().find(|(n, _)| n == c))
                .and_then(|(_, m)| *m),
            (Some(r), None) => self.relations.get(r).and_then(RelationColumns::strictest),
            (None, Some(c)) => self.by_name.get(c).copied(),
            (None, None) => self.by_name.values().copied().reduce(MaskMethod::stricter),
        }
    }

    /// The masking of a computed value with these sources, if any is masked.
    pub fn sources<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a SourceColumn>,
    ) -> Option<MaskMethod> {
        sources
            .into_iter()
            .filter_map(|s| self.source(s))
            .reduce(MaskMethod::stricter)
            .map(MaskMethod::derived)
    }

    /// The columns of `relation` in order with their masking, when the
    /// relation has a masked column (COPY of a table, stars).
    pub fn columns_of(&self, relation: &Relation) -> Option<Vec<Option<MaskMethod>>> {
        let rel = self.relations.get(relation)?;
        Some(rel.columns.iter().map(|(_, m)| *m).collect())
    }

    /// Taints the columns of a view from its definition's lineage; true when
    /// something changed. A definition that cannot be traced position by
    /// position taints every column the view has.
    fn taint_view(
        &mut self,
        oid: Oid,
        relation: &Relation,
        columns: &[(i16, String)],
        lineage: Option<&Lineage>,
    ) -> bool {
        let traced = lineage
            .filter(|l| l.columns.len() == columns.len() && l.columns.iter().all(|c| !c.star));
        let methods: Vec<Option<MaskMethod>> = match traced {
            Some(l) => l
                .columns
                .iter()
                .map(|c| self.sources(c.sources.iter()))
                .collect(),
            None => vec![Some(MaskMethod::Redact); columns.len()],
        };
        let mut changed = false;
        for ((attnum, name), method) in columns.iter().zip(methods) {
            let Some(method) = method else { continue };
            if self.by_origin.insert((oid, *attnum), method) != Some(method) {
                changed = true;
            }
            let rel = self.relations.entry(relation.clone()).or_default();
            if rel.columns.len() != columns.len() {
                rel.columns = columns.iter().map(|(_, n)| (n.clone(), None)).collect();
            }
            if let Some(slot) = rel.columns.iter_mut().find(|(n, _)| n == name) {
                slot.1 = Some(method);
            }
        }
        changed
    }
}

/// How to reach a target's catalog.
#[derive(Clone)]
pub struct CatalogConfig {
    /// Database host.
    pub host: String,
    /// Database port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Role the agent reads the catalog as (the admin role, or the static one).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Snapshots older than this are reloaded.
    pub max_age: Duration,
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// The catalog of one target, shared by its sessions.
#[derive(Debug)]
pub struct Catalog {
    config: CatalogConfig,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Bumped when DDL passes through: every snapshot older is stale.
    generation: AtomicU64,
    snapshots: Mutex<BTreeMap<Vec<MaskedColumn>, Cached>>,
}

#[derive(Debug)]
struct Cached {
    snapshot: Arc<Snapshot>,
    loaded: Instant,
    generation: u64,
}

impl Catalog {
    /// A catalog that connects on first use.
    pub fn new(config: CatalogConfig) -> Self {
        Self {
            config,
            client: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            snapshots: Mutex::new(BTreeMap::new()),
        }
    }

    /// DDL passed through a session: reload before the next masking.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The snapshot for `masks` (sorted), loading it when missing or stale.
    pub async fn snapshot(&self, masks: &[MaskedColumn]) -> Result<Arc<Snapshot>, CatalogError> {
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(s) = self.cached(masks, generation) {
            return Ok(s);
        }
        // One load at a time over the catalog connection; every session
        // that waited for it then finds its result (without this, all
        // sessions of a target reloaded one after another whenever the
        // snapshot aged or DDL passed: seconds of stall under load).
        let mut client = self.client.lock().await;
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(s) = self.cached(masks, generation) {
            return Ok(s);
        }
        let snapshot = Arc::new(self.load(&mut client, masks).await?);
        self.lock().insert(
            masks.to_vec(),
            Cached {
                snapshot: snapshot.clone(),
                loaded: Instant::now(),
                generation,
            },
        );
        Ok(snapshot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<MaskedColumn>, Cached>> {
        self.snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, masks: &[MaskedColumn], generation: u64) -> Option<Arc<Snapshot>> {
        let cache = self.lock();
        let c = cache.get(masks)?;
        (c.generation == generation && c.loaded.elapsed() < self.config.max_age)
            .then(|| c.snapshot.clone())
    }

    async fn load(
        &self,
        guard: &mut Option<tokio_postgres::Client>,
        masks: &[MaskedColumn],
    ) -> Result<Snapshot, CatalogError> {
        if guard.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        let Some(client) = guard.as_ref() else {
            return Err(CatalogError::Connect("no connection".into()));
        };
        match tokio::time::timeout(CATALOG_TIMEOUT, resolve(client, masks)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                *guard = None;
                Err(CatalogError::Query(e.to_string()))
            }
            Err(_) => {
                *guard = None;
                Err(CatalogError::Timeout(CATALOG_TIMEOUT))
            }
        }
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, CatalogError> {
        let c = &self.config;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&c.host)
            .port(c.port)
            .dbname(&c.database)
            .user(&c.user)
            .password(c.password.as_bytes())
            .application_name("palisade-agent catalog")
            // Catalog names come back schema-qualified (view definitions).
            .options("-c search_path=")
            .connect_timeout(CATALOG_TIMEOUT);
        let (client, connection) =
            tokio::time::timeout(CATALOG_TIMEOUT, pg.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| CatalogError::Timeout(CATALOG_TIMEOUT))?
                .map_err(|e| CatalogError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "catalog connection ended");
            }
        });
        Ok(client)
    }
}

const MASKED_COLUMNS: &str = "\
SELECT c.oid, a.attnum, m.s, m.t, m.col \
FROM unnest($1::text[], $2::text[], $3::text[]) AS m(s, t, col) \
JOIN pg_catalog.pg_namespace n ON n.nspname = m.s \
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = m.t \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = m.col \
 AND a.attnum > 0 AND NOT a.attisdropped";

/// Views (and views over them) whose rules read any of the given relations.
const DEPENDENT_VIEWS: &str = "\
WITH RECURSIVE v(oid) AS ( \
  SELECT r.ev_class FROM pg_catalog.pg_depend d \
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
    AND d.refobjid = ANY($1::pg_catalog.oid[]) AND r.ev_class <> d.refobjid \
  UNION \
  SELECT r.ev_class FROM v JOIN pg_catalog.pg_depend d ON d.refobjid = v.oid \
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND r.ev_class <> d.refobjid \
) \
SELECT c.oid, n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.oid IN (SELECT oid FROM v) AND c.relkind IN ('v', 'm')";

const BUILTIN_FUNCTIONS: &str = "\
SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p \
WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace";

const COLUMNS: &str = "\
SELECT a.attrelid, a.attnum, a.attname FROM pg_catalog.pg_attribute a \
WHERE a.attrelid = ANY($1::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
ORDER BY a.attrelid, a.attnum";

/// A view's definition passes views over views at most this deep.
const MAX_VIEW_DEPTH: usize = 32;

async fn resolve(
    client: &tokio_postgres::Client,
    masks: &[MaskedColumn],
) -> Result<Snapshot, tokio_postgres::Error> {
    let mut snapshot = Snapshot::from_names(masks);
    let schemas: Vec<&str> = masks.iter().map(|m| m.schema.as_str()).collect();
    let tables_names: Vec<&str> = masks.iter().map(|m| m.table.as_str()).collect();
    let columns: Vec<&str> = masks.iter().map(|m| m.column.as_str()).collect();
    let mut tables: Vec<(Oid, Relation)> = Vec::new();
    for row in client
        .query(MASKED_COLUMNS, &[&schemas, &tables_names, &columns])
        .await?
    {
        let oid: Oid = row.get(0);
        let attnum: i16 = row.get(1);
        let (schema, table, column): (String, String, String) =
            (row.get(2), row.get(3), row.get(4));
        if let Some(m) = masks
            .iter()
            .find(|m| m.schema == schema && m.table == table && m.column == column)
        {
            snapshot.by_origin.insert((oid, attnum), m.method);
        }
        if !tables.iter().any(|(o, _)| *o == oid) {
            tables.push((
                oid,
                Relation {
                    schema,
                    name: table,
                },
            ));
        }
    }
    let tables_oids: Vec<Oid> = tables.iter().map(|(o, _)| *o).collect();
    snapshot.builtins = Some(
        client
            .query(BUILTIN_FUNCTIONS, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    );
    let views = client.query(DEPENDENT_VIEWS, &[&tables_oids]).await?;
    let mut oids = tables_oids.clone();
    oids.extend(views.iter().map(|r| r.get::<_, Oid>(0)));
    let mut columns_by_oid: HashMap<Oid, Vec<(i16, String)>> = HashMap::new();
    for row in client.query(COLUMNS, &[&oids]).await? {
        columns_by_oid
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    // The full column lists of masked tables (COPY, stars).
    for (oid, relation) in &tables {
        let Some(cols) = columns_by_oid.get(oid) else {
            continue;
        };
        let rel = snapshot.relations.entry(relation.clone()).or_default();
        let known = std::mem::take(&mut rel.columns);
        rel.columns = cols
            .iter()
            .map(|(_, n)| {
                let method = known.iter().find(|(k, _)| k == n).and_then(|(_, m)| *m);
                (n.clone(), method)
            })
            .collect();
    }
    let views: Vec<(Oid, Relation, Option<Lineage>)> = views
        .iter()
        .map(|row| {
            let definition: String = row.get(3);
            let lineage = palisade_sql::analyze(&definition, &[])
                .ok()
                .and_then(|mut s| (s.len() == 1).then(|| s.remove(0)))
                .and_then(|s| s.lineage)
                .map(std::sync::Arc::unwrap_or_clone);
            let relation = Relation {
                schema: row.get(1),
                name: row.get(2),
            };
            (row.get(0), relation, lineage)
        })
        .collect();
    // Views over views: taint until nothing changes.
    for _ in 0..MAX_VIEW_DEPTH {
        let mut changed = false;
        for (oid, relation, lineage) in &views {
            let cols = columns_by_oid.get(oid).map_or(&[][..], Vec::as_slice);
            changed |= snapshot.taint_view(*oid, relation, cols, lineage.as_ref());
        }
        if !changed {
            break;
        }
    }
    Ok(snapshot)
}
