//! The policy set: loaded from a directory, validated strictly against the
//! schema, swapped atomically on change. A bad edit keeps the last good set.

mod load;
mod problem;
mod reload;
pub mod targets;

use std::collections::HashMap;
use std::time::SystemTime;

use cedar_policy::{Entities, EntityUid, PolicyId, PolicySet, Schema};

pub use load::{PolicyMeta, SCHEMA_FILE, ids_by_file, load_dir};
pub use problem::PolicyProblem;
pub use reload::{PolicyStore, Rejected};
pub use targets::{ClassifiedColumn, TargetData, Targets};

/// One validated, immutable policy set. Requests hold an `Arc` of the snapshot
/// they started with, so a reload never disturbs a request in flight.
#[derive(Debug)]
pub struct PolicySnapshot {
    /// Content hash of every file of the set; changes whenever any file does.
    pub version: String,
    /// When this set was loaded.
    pub loaded_at: SystemTime,
    /// The policy files, relative to the directory.
    pub files: Vec<String>,
    pub(crate) schema: Schema,
    /// Permits and plain forbids.
    pub(crate) base: PolicySet,
    /// Forbids annotated with `@approval`, beside a permit-all.
    pub(crate) approval: PolicySet,
    /// Both sets cut down to the policies each action can meet.
    pub(crate) by_action: HashMap<EntityUid, ActionSets>,
    pub(crate) meta: HashMap<PolicyId, PolicyMeta>,
    pub(crate) targets: Targets,
    /// Databases, roles and classified columns from `targets.toml`.
    pub(crate) entities: Entities,
}

/// The base and approval sets of one action.
#[derive(Debug)]
pub(crate) struct ActionSets {
    /// Position of the action among the snapshot's actions (`0..by_action.len()`),
    /// for per-scope tables indexed by action.
    pub(crate) index: usize,
    pub(crate) base: PolicySet,
    pub(crate) approval: PolicySet,
}

impl PolicySnapshot {
    /// The base and approval sets to evaluate for `action` (the whole sets
    /// for an action the schema does not know, which then fails to match).
    pub(crate) fn sets_for(&self, action: &EntityUid) -> (&PolicySet, &PolicySet) {
        match self.by_action.get(action) {
            Some(s) => (&s.base, &s.approval),
            None => (&self.base, &self.approval),
        }
    }

    /// The sliced sets of an action the schema knows.
    pub(crate) fn action_sets(&self, action: &EntityUid) -> Option<&ActionSets> {
        self.by_action.get(action)
    }

    /// The ids of every policy, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.meta.keys().map(ToString::to_string).collect();
        ids.sort();
        ids
    }

    /// What the set knows about a target, if it knows it.
    pub fn target(&self, name: &str) -> Option<&TargetData> {
        self.targets.get(name)
    }

    /// Annotations of a policy.
    pub fn meta(&self, id: &PolicyId) -> Option<&PolicyMeta> {
        self.meta.get(id)
    }

    /// The Cedar schema the set was validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

/// Policy directories for tests.
#[cfg(test)]
pub(crate) mod test_dirs {
    use std::path::PathBuf;

    use super::SCHEMA_FILE;

    /// The example policies of the repository.
    pub(crate) fn example_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    /// A directory with the example schema and one policy file, `p.cedar`.
    pub(crate) fn dir_with(policy: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            example_dir().join(SCHEMA_FILE),
            dir.path().join(SCHEMA_FILE),
        )
        .unwrap();
        std::fs::write(dir.path().join("p.cedar"), policy).unwrap();
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::test_dirs::{dir_with, example_dir};
    use super::*;

    #[test]
    fn the_example_policies_load() {
        let snapshot = load_dir(&example_dir()).unwrap_or_else(|p| {
            panic!(
                "{}",
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(
            snapshot
                .policy_ids()
                .contains(&"ci-read-production".to_owned())
        );
        assert!(snapshot.target("prod").is_some());
        assert_eq!(snapshot.version.len(), 16);
    }

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let dir = dir_with("\n\n@id(\"x\")\npermit(principal, action, resource) when { ;");
        let problems = load_dir(dir.path()).unwrap_err();
        assert_eq!(problems[0].file, "p.cedar");
        assert_eq!(problems[0].line, 4, "{problems:?}");
        assert!(problems[0].column > 1);
    }

    #[test]
    fn a_schema_violation_names_the_line() {
        let dir = dir_with(
            "@id(\"ok\")\npermit(principal, action, resource);\n\n@id(\"bad\")\npermit(principal, action == Palisade::Action::\"select\", resource)\nwhen { context.statement.no_such_field };\n",
        );
        let problems = load_dir(dir.path()).unwrap_err();
        assert!(
            problems.iter().any(|p| p.file == "p.cedar" && p.line == 6),
            "{problems:?}"
        );
    }

    #[test]
    fn duplicate_ids_and_bad_annotations_are_refused() {
        let dir = dir_with(
            "@id(\"a\")\npermit(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);\n@id(\"b\")\n@approval(\"dba\")\npermit(principal, action, resource);\n@id(\"c\")\n@mask(\"scramble\")\nforbid(principal, action, resource);\n",
        );
        let problems = load_dir(dir.path()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("already used")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("@approval belongs")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("unknown @mask")), "{text:?}");
    }
}
