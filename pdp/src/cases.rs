//! Policy test cases: a file of (principal, action or SQL → expected decision)
//! that a security team keeps beside its policies and runs in CI with
//! `palisade policy test DIR`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::engine::{Effect, Principal, Scope, SessionFacts, Verdict};
use crate::policy::{PolicyProblem, PolicySnapshot};

/// The case file inside a policy directory.
pub const CASES_FILE: &str = "tests.toml";

/// Issuer given to test principals that name none.
pub const TEST_ISSUER: &str = "https://policy-tests.palisade.invalid";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    principals: BTreeMap<String, PrincipalSpec>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: String,
    #[serde(default = "default_target")]
    target: String,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    column: Option<String>,
    expect: String,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    application_name: Option<String>,
    /// `action = "review"`: the reviewer groups the held statement names.
    #[serde(default)]
    reviewers: Option<Vec<String>>,
    /// `action = "review"`: the principal (by name) whose statement is held.
    #[serde(default)]
    requester: Option<String>,
}

fn default_target() -> String {
    "prod".to_owned()
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Line of its `[[case]]` header in the file.
    pub line: u32,
    /// Whether the decision was the expected one.
    pub passed: bool,
    /// What happened, for a failure.
    pub detail: String,
}

/// Runs every case of `dir/tests.toml` against `snapshot`. Problems with the
/// file itself (syntax, unknown principal, a case that names neither SQL nor
/// an action) are errors with file and line.
pub fn run(
    dir: &Path,
    snapshot: &Arc<PolicySnapshot>,
) -> Result<Vec<CaseResult>, Vec<PolicyProblem>> {
    let path = dir.join(CASES_FILE);
    let source = std::fs::read_to_string(&path).map_err(|e| {
        vec![PolicyProblem::whole_file(
            CASES_FILE,
            format!("cannot read: {e}"),
        )]
    })?;
    let file: CaseFile = toml::from_str(&source).map_err(|e| {
        vec![PolicyProblem::at_offset(
            CASES_FILE,
            &source,
            e.span().map_or(0, |s| s.start),
            e.message().to_owned(),
        )]
    })?;
    let case_lines: Vec<u32> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[case]]")
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
        .collect();
    let mut problems = Vec::new();
    let mut results = Vec::new();
    for (index, case) in file.case.iter().enumerate() {
        let line = case_lines.get(index).copied().unwrap_or(0);
        let problem = |message: String| PolicyProblem {
            file: CASES_FILE.to_owned(),
            line,
            column: 1,
            message: format!("case `{}`: {message}", case.name),
        };
        let Some(spec) = file.principals.get(&case.principal) else {
            problems.push(problem(format!("unknown principal `{}`", case.principal)));
            continue;
        };
        let expect: Effect = match case.expect.parse() {
            Ok(e) => e,
            Err(bad) => {
                problems.push(problem(format!(
                    "expect `{bad}`: use allow, deny or require_approval"
                )));
                continue;
            }
        };
        match evaluate(snapshot, &case.principal, spec, case, &file.principals) {
            Ok(verdict) => results.push(judge(case, line, expect, &verdict)),
            Err(message) => problems.push(problem(message)),
        }
    }
    if problems.is_empty() {
        Ok(results)
    } else {
        Err(problems)
    }
}

fn principal(name: &str, spec: &PrincipalSpec) -> Principal {
    let issuer = spec
        .issuer
        .clone()
        .unwrap_or_else(|| TEST_ISSUER.to_owned());
    let subject = spec.subject.clone().unwrap_or_else(|| name.to_owned());
    Principal {
        id: format!("{issuer}|{subject}"),
        issuer,
        subject,
        groups: spec.groups.clone(),
        claims: spec.claims.clone(),
    }
}

fn evaluate(
    snapshot: &Arc<PolicySnapshot>,
    name: &str,
    spec: &PrincipalSpec,
    case: &Case,
    principals: &BTreeMap<String, PrincipalSpec>,
) -> Result<Verdict, String> {
    let facts = SessionFacts {
        target: case.target.clone(),
        application_name: case
            .application_name
            .clone()
            .unwrap_or_else(|| "psql".to_owned()),
        client_address: "127.0.0.1:5000".to_owned(),
        database_user: name.to_owned(),
        tls: true,
    };
    let scope =
        Scope::new(snapshot.clone(), &principal(name, spec), &facts).map_err(|e| e.to_string())?;
    match (case.sql.as_deref(), case.action.as_deref()) {
        (Some(sql), None) => {
            let statements = match palisade_sql::analyze(sql, &["public"]) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Verdict {
                        effect: Effect::Deny,
                        policies: Vec::new(),
                        reason: format!("the statement does not parse: {e}"),
                        reviewers: Vec::new(),
                    });
                }
            };
            // A query string is decided as a whole: any deny denies it, else
            // any hold holds it.
            let mut verdicts: Vec<Verdict> = statements
                .iter()
                .map(|s| scope.decide_statement(&s.attributes).verdict)
                .collect();
            verdicts.sort_by_key(|v| match v.effect {
                Effect::Deny => 0,
                Effect::RequireApproval => 1,
                Effect::Allow => 2,
            });
            verdicts
                .into_iter()
                .next()
                .ok_or_else(|| "the SQL holds no statement".to_owned())
        }
        (None, Some("connect")) => Ok(scope.decide_connect()),
        (None, Some("assume_role")) => {
            let role = case.role.clone().ok_or("assume_role needs `role`")?;
            let roles = [role];
            let verdicts = scope.decide_roles(&roles);
            verdicts
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .ok_or_else(|| "no role decided".to_owned())
        }
        (None, Some("unmask")) => {
            let column = case.column.as_deref().ok_or("unmask needs `column`")?;
            let parts: Vec<&str> = column.split('.').collect();
            let [schema, table, column] = parts.as_slice() else {
                return Err(format!(
                    "column `{column}` must be written schema.table.column"
                ));
            };
            Ok(scope.decide_unmask(schema, table, column))
        }
        (None, Some("review")) => {
            let requester = case
                .requester
                .as_deref()
                .ok_or("review needs `requester`")?;
            let requester_spec = principals
                .get(requester)
                .ok_or_else(|| format!("unknown requester `{requester}`"))?;
            let approval = palisade_proto::v1::Approval {
                id: format!("test-{}", case.name),
                requester: Some(palisade_proto::v1::Principal {
                    id: principal(requester, requester_spec).id,
                    ..Default::default()
                }),
                target: case.target.clone(),
                reviewers: case.reviewers.clone().ok_or("review needs `reviewers`")?,
                ..Default::default()
            };
            Ok(crate::approvals::review::decide(
                snapshot,
                &principal(name, spec),
                &approval,
            ))
        }
        (None, Some(other)) => Err(format!(
            "action `{other}`: use connect, assume_role, unmask or review, or give `sql`"
        )),
        (Some(_), Some(_)) => Err("give either `sql` or `action`, not both".to_owned()),
        (None, None) => Err("give `sql` or `action`".to_owned()),
    }
}

fn judge(case: &Case, line: u32, expect: Effect, verdict: &Verdict) -> CaseResult {
    let mut failures = Vec::new();
    if verdict.effect != expect {
        failures.push(format!("expected {expect}, got {}", verdict.effect));
    }
    if let Some(wanted) = &case.policies {
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|p| !verdict.policies.contains(p))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "expected policies {wanted:?} to determine it, got {:?}",
                verdict.policies
            ));
        }
    }
    let detail = if failures.is_empty() {
        format!("{} by {:?}", verdict.effect, verdict.policies)
    } else {
        format!("{} (reason: {})", failures.join("; "), verdict.reason)
    };
    CaseResult {
        name: case.name.clone(),
        line,
        passed: failures.is_empty(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_dir;
    use std::path::PathBuf;

    #[test]
    fn every_example_case_passes() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let snapshot = Arc::new(load_dir(&dir).unwrap());
        let results = run(&dir, &snapshot).unwrap();
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("tests.toml:{} {}: {}", r.line, r.name, r.detail))
            .collect();
        assert!(failed.is_empty(), "{}", failed.join("\n"));
        assert!(results.len() >= 30);
    }
}
