//! Loading a policy directory into an immutable, validated snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{
    ActionConstraint, Effect as CedarEffect, Entities, EntityUid, Policy, PolicyId, PolicySet,
    Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

use super::problem::display_name;
use super::targets::{self, TARGETS_FILE, Targets};
use super::{ActionSets, PolicyProblem, PolicySnapshot};
use crate::engine::MaskMethod;

/// The schema file every policy directory must hold.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// Id of the permit-all policy that sits beside the approval policies, so that
/// only an annotated forbid can turn their answer into "needs a review".
pub(crate) const APPROVAL_BASELINE_ID: &str = "palisade:approval-baseline";

/// What Palisade reads from a policy's annotations.
#[derive(Debug, Clone)]
pub struct PolicyMeta {
    /// The file the policy lives in.
    pub file: String,
    /// `@reason("...")`: the sentence a refused user sees.
    pub reason: Option<String>,
    /// `@mask("...")` on a forbid of `unmask`: how the column is masked.
    pub mask: Option<MaskMethod>,
    /// `@approval("group, group")` on a forbid: the reviewer groups. A forbid
    /// with this annotation means "not without a review".
    pub approval: Vec<String>,
    /// `@approval_timeout("90s")` beside `@approval`: how long the statement
    /// waits for a reviewer (else the PDP's `approvals.timeout`).
    pub approval_timeout: Option<std::time::Duration>,
}

/// Reads and validates every file of `dir`. Either the whole set is good, or
/// every problem found is returned with its file, line and column.
pub fn load_dir(dir: &Path) -> Result<PolicySnapshot, Vec<PolicyProblem>> {
    let mut problems = Vec::new();
    let mut hasher = Sha256::new();

    let schema_path = dir.join(SCHEMA_FILE);
    let schema_src = read(&schema_path, SCHEMA_FILE, &mut problems);
    hasher.update(SCHEMA_FILE.as_bytes());
    hasher.update(schema_src.as_deref().unwrap_or_default().as_bytes());
    let schema = schema_src
        .as_deref()
        .and_then(|src| match Schema::from_cedarschema_str(src) {
            Ok((schema, _warnings)) => Some(schema),
            Err(e) => {
                problems.extend(PolicyProblem::from_diagnostic(
                    SCHEMA_FILE,
                    src,
                    &e,
                    &e.to_string(),
                ));
                None
            }
        });

    let targets_path = dir.join(TARGETS_FILE);
    let targets = if targets_path.exists() {
        let src = read(&targets_path, TARGETS_FILE, &mut problems).unwrap_or_default();
        hasher.update(TARGETS_FILE.as_bytes());
        hasher.update(src.as_bytes());
        targets::parse(&src).unwrap_or_else(|p| {
            problems.extend(p);
            Targets::new()
        })
    } else {
        Targets::new()
    };

    let mut files = Vec::new();
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut all = PolicySet::new();
    let mut meta: HashMap<PolicyId, PolicyMeta> = HashMap::new();
    for path in policy_files(dir, &mut problems) {
        let name = display_name(dir, &path);
        let Some(src) = read(&path, &name, &mut problems) else {
            continue;
        };
        hasher.update(name.as_bytes());
        hasher.update(src.as_bytes());
        files.push(name.clone());
        match PolicySet::from_str(&src) {
            Ok(set) => {
                if set.templates().next().is_some() {
                    problems.push(PolicyProblem::whole_file(
                        &name,
                        "policy templates are not supported; write static policies",
                    ));
                }
                for (index, policy) in set.policies().enumerate() {
                    add_policy(
                        &name,
                        &src,
                        index,
                        policy,
                        &mut all,
                        &mut meta,
                        &mut problems,
                    );
                }
            }
            Err(e) => {
                problems.extend(PolicyProblem::from_diagnostic(
                    &name,
                    &src,
                    &e,
                    &e.to_string(),
                ));
            }
        }
        sources.insert(name, src);
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(PolicyProblem::whole_file(
            display_name(dir, dir),
            "no policy files (*.cedar) in the directory",
        ));
    }

    let Some(schema) = schema else {
        return Err(problems);
    };
    let validation = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
    for error in validation.validation_errors() {
        let file = meta
            .get(error.policy_id())
            .map(|m| m.file.clone())
            .unwrap_or_default();
        let src = sources.get(&file).map(String::as_str).unwrap_or_default();
        problems.extend(PolicyProblem::from_diagnostic(
            &file,
            src,
            error,
            &error.to_string(),
        ));
    }

    let entities =
        Entities::from_entities(targets::entities(&targets), Some(&schema)).map_err(|e| {
            PolicyProblem::whole_file(
                TARGETS_FILE,
                format!("target data does not fit the schema: {e}"),
            )
        });
    let entities = match entities {
        Ok(entities) => Some(entities),
        Err(p) => {
            problems.push(p);
            None
        }
    };

    if !problems.is_empty() {
        return Err(problems);
    }
    let (base, approval) = split(&all, &meta).map_err(|e| vec![e])?;
    let by_action = slice_by_action(&schema, &base, &approval).map_err(|e| vec![e])?;
    let digest = hasher.finalize();
    Ok(PolicySnapshot {
        version: hex::encode(digest.get(..8).unwrap_or_default()),
        loaded_at: SystemTime::now(),
        files,
        schema,
        base,
        approval,
        by_action,
        meta,
        targets,
        entities: entities.unwrap_or_else(Entities::empty),
    })
}

fn read(path: &Path, name: &str, problems: &mut Vec<PolicyProblem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(PolicyProblem::whole_file(name, format!("cannot read: {e}")));
            None
        }
    }
}

fn policy_files(dir: &Path, problems: &mut Vec<PolicyProblem>) -> Vec<std::path::PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(PolicyProblem::whole_file(
                dir.display().to_string(),
                format!("cannot read the policy directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    files.sort();
    files
}

fn add_policy(
    file: &str,
    src: &str,
    index: usize,
    policy: &Policy,
    all: &mut PolicySet,
    meta: &mut HashMap<PolicyId, PolicyMeta>,
    problems: &mut Vec<PolicyProblem>,
) {
    let locate = |message: String| {
        let offset = policy
            .annotation("id")
            .and_then(|id| src.find(&format!("\"{id}\"")))
            .unwrap_or(0);
        PolicyProblem::at_offset(file, src, offset, message)
    };
    let id = policy
        .annotation("id")
        .map_or_else(|| format!("{file}#{index}"), str::to_owned);
    let id = PolicyId::new(id);
    if let Some(first) = meta.get(&id) {
        problems.push(locate(format!(
            "policy id `{id}` is already used in {}",
            first.file
        )));
        return;
    }
    let mask = match policy.annotation("mask").map(MaskMethod::from_str) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(bad)) => {
            problems.push(locate(format!(
                "unknown @mask `{bad}`: expected redact, last4, email, hash or null"
            )));
            None
        }
    };
    let approval: Vec<String> = policy
        .annotation("approval")
        .map(|groups| {
            groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if policy.annotation("approval").is_some() {
        if policy.effect() != CedarEffect::Forbid {
            problems.push(locate(
                "@approval belongs on a forbid policy (\"not without a review\")".to_owned(),
            ));
        } else if approval.is_empty() {
            problems.push(locate(
                "@approval must name at least one reviewer group".to_owned(),
            ));
        }
    }
    let approval_timeout = match policy.annotation("approval_timeout") {
        None => None,
        Some(text) => match humantime_serde::re::humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() && policy.annotation("approval").is_some() => Some(d),
            Ok(_) if policy.annotation("approval").is_none() => {
                problems.push(locate(
                    "@approval_timeout belongs beside @approval".to_owned(),
                ));
                None
            }
            Ok(_) => {
                problems.push(locate(
                    "@approval_timeout must be more than zero".to_owned(),
                ));
                None
            }
            Err(e) => {
                problems.push(locate(format!(
                    "@approval_timeout `{text}` is not a duration (e.g. \"90s\", \"5m\"): {e}"
                )));
                None
            }
        },
    };
    if let Err(e) = all.add(policy.new_id(id.clone())) {
        problems.push(locate(e.to_string()));
        return;
    }
    meta.insert(
        id,
        PolicyMeta {
            file: file.to_owned(),
            reason: policy.annotation("reason").map(str::to_owned),
            mask,
            approval,
            approval_timeout,
        },
    );
}

/// Splits the validated set into the base set (permits and plain forbids) and
/// the approval set (annotated forbids beside a permit-all).
fn split(
    all: &PolicySet,
    meta: &HashMap<PolicyId, PolicyMeta>,
) -> Result<(PolicySet, PolicySet), PolicyProblem> {
    let mut base = PolicySet::new();
    let mut approval = PolicySet::new();
    let to_problem = |e: cedar_policy::PolicySetError| PolicyProblem::whole_file("", e.to_string());
    for policy in all.policies() {
        let is_approval = meta
            .get(policy.id())
            .is_some_and(|m| !m.approval.is_empty());
        if is_approval {
            approval.add(policy.clone()).map_err(to_problem)?;
        } else {
            base.add(policy.clone()).map_err(to_problem)?;
        }
    }
    let baseline = Policy::parse(
        Some(PolicyId::new(APPROVAL_BASELINE_ID)),
        "permit(principal, action, resource);",
    )
    .map_err(|e| PolicyProblem::whole_file("", e.to_string()))?;
    approval.add(baseline).map_err(to_problem)?;
    Ok((base, approval))
}

/// The policies that can apply to each action of the schema: a policy whose
/// action scope excludes an action can never be satisfied (nor fail) for it,
/// so leaving it out changes no answer and saves its evaluation.
fn slice_by_action(
    schema: &Schema,
    base: &PolicySet,
    approval: &PolicySet,
) -> Result<HashMap<EntityUid, ActionSets>, PolicyProblem> {
    let to_problem = |e: String| PolicyProblem::whole_file(SCHEMA_FILE, e);
    let actions = schema
        .action_entities()
        .map_err(|e| to_problem(e.to_string()))?;
    let mut out = HashMap::new();
    for action in schema.actions() {
        let groups: Vec<EntityUid> = actions
            .ancestors(action)
            .map(|a| a.cloned().collect())
            .unwrap_or_default();
        let applies = |p: &Policy| match p.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(a) => &a == action,
            ActionConstraint::In(list) => list.iter().any(|g| g == action || groups.contains(g)),
        };
        let mut sets = ActionSets {
            index: out.len(),
            base: PolicySet::new(),
            approval: PolicySet::new(),
        };
        for p in base.policies().filter(|p| applies(p)) {
            sets.base
                .add(p.clone())
                .map_err(|e| to_problem(e.to_string()))?;
        }
        for p in approval.policies().filter(|p| applies(p)) {
            sets.approval
                .add(p.clone())
                .map_err(|e| to_problem(e.to_string()))?;
        }
        out.insert(action.clone(), sets);
    }
    Ok(out)
}

/// Policy ids by file, for status reports.
pub fn ids_by_file(meta: &HashMap<PolicyId, PolicyMeta>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, m) in meta {
        out.entry(m.file.clone()).or_default().push(id.to_string());
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    out
}
