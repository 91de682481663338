//! Target data kept beside the policies: databases, their grantable roles and
//! the classification of sensitive columns, turned into Cedar entities.

use std::collections::{BTreeMap, HashMap};

use cedar_policy::{Entity, RestrictedExpression};
use serde::Deserialize;

use super::PolicyProblem;
use crate::engine::uid;

/// The file, inside the policy directory, that describes the targets.
pub const TARGETS_FILE: &str = "targets.toml";

/// `targets.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    targets: BTreeMap<String, TargetSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    engine: String,
    environment: String,
    #[serde(default)]
    roles: Vec<String>,
    /// "schema.table.column" -> classification.
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

/// A classified column of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedColumn {
    /// The column name.
    pub column: String,
    /// Its classification (pii, pci, secret, ...).
    pub classification: String,
}

/// What the policies know about one target.
#[derive(Debug, Clone, Default)]
pub struct TargetData {
    /// Database engine ("postgresql").
    pub engine: String,
    /// Environment ("production", "staging").
    pub environment: String,
    /// Roles that `assume_role` may grant.
    pub roles: Vec<String>,
    /// Classified columns per (schema, table).
    pub classified: HashMap<(String, String), Vec<ClassifiedColumn>>,
}

/// All targets by name.
pub type Targets = BTreeMap<String, TargetData>;

/// Parses `targets.toml`; problems name the file, line and column.
pub fn parse(source: &str) -> Result<Targets, Vec<PolicyProblem>> {
    let file: TargetsFile = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        vec![PolicyProblem::at_offset(
            TARGETS_FILE,
            source,
            offset,
            e.message().to_owned(),
        )]
    })?;
    let mut problems = Vec::new();
    let mut targets = Targets::new();
    for (name, spec) in file.targets {
        if name.is_empty() || name.contains('/') {
            problems.push(problem_near(
                source,
                &name,
                format!("target name `{name}` must be non-empty and contain no `/`"),
            ));
            continue;
        }
        let mut classified: HashMap<(String, String), Vec<ClassifiedColumn>> = HashMap::new();
        for (path, classification) in spec.columns {
            let parts: Vec<&str> = path.split('.').collect();
            let [schema, table, column] = parts.as_slice() else {
                problems.push(problem_near(
                    source,
                    &path,
                    format!(
                        "column `{path}` of target `{name}` must be written schema.table.column"
                    ),
                ));
                continue;
            };
            classified
                .entry(((*schema).to_owned(), (*table).to_owned()))
                .or_default()
                .push(ClassifiedColumn {
                    column: (*column).to_owned(),
                    classification,
                });
        }
        targets.insert(
            name,
            TargetData {
                engine: spec.engine,
                environment: spec.environment,
                roles: spec.roles,
                classified,
            },
        );
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(problems)
    }
}

/// The Cedar entities the target data stands for: each database, its roles,
/// and every classified column with its table and schema.
pub fn entities(targets: &Targets) -> Vec<Entity> {
    let mut out = Vec::new();
    for (name, target) in targets {
        out.push(entity(
            uid::database(name),
            [
                ("engine", target.engine.as_str()),
                ("environment", target.environment.as_str()),
            ],
            [],
        ));
        for role in &target.roles {
            out.push(entity(
                uid::role(name, role),
                [("name", role.as_str())],
                [uid::database(name)],
            ));
        }
        for ((schema, table), columns) in &target.classified {
            for c in columns {
                out.push(entity(
                    uid::column(name, schema, table, &c.column),
                    [
                        ("name", c.column.as_str()),
                        ("classification", c.classification.as_str()),
                    ],
                    [uid::table(name, schema, table)],
                ));
            }
        }
    }
    out
}

fn entity<const N: usize, const P: usize>(
    id: cedar_policy::EntityUid,
    attrs: [(&str, &str); N],
    parents: [cedar_policy::EntityUid; P],
) -> Entity {
    let attrs = attrs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), RestrictedExpression::new_string(v.to_owned())));
    // INVARIANT: string attributes cannot fail evaluation; fall back to a bare
    // entity rather than panic if cedar ever says otherwise.
    Entity::new_with_tags(id.clone(), attrs, parents, []).unwrap_or_else(|_| Entity::with_uid(id))
}

fn problem_near(source: &str, needle: &str, message: String) -> PolicyProblem {
    let offset = source.find(needle).unwrap_or(0);
    PolicyProblem::at_offset(TARGETS_FILE, source, offset, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_columns() {
        let t = parse(
            r#"
[targets.prod]
engine = "postgresql"
environment = "production"
roles = ["r"]
[targets.prod.columns]
"public.customers.ssn" = "pii"
"#,
        )
        .unwrap();
        let prod = &t["prod"];
        assert_eq!(prod.roles, ["r"]);
        assert_eq!(
            prod.classified[&("public".into(), "customers".into())][0].classification,
            "pii"
        );
        assert_eq!(entities(&t).len(), 3);
    }

    #[test]
    fn bad_column_path_is_located() {
        let src = "[targets.prod]\nengine = \"postgresql\"\nenvironment = \"p\"\n[targets.prod.columns]\n\"ssn\" = \"pii\"\n";
        let problems = parse(src).unwrap_err();
        assert_eq!(problems[0].line, 5);
        assert!(problems[0].message.contains("schema.table.column"));
    }

    #[test]
    fn unknown_fields_are_refused_with_a_line() {
        let src =
            "[targets.prod]\nengine = \"postgresql\"\nenvironment = \"p\"\nenviroment = \"typo\"\n";
        let problems = parse(src).unwrap_err();
        assert_eq!(problems[0].line, 4, "{problems:?}");
    }
}
