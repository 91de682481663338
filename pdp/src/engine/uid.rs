//! Cedar entity ids of the Palisade schema, built in one place so every
//! module names entities the same way (see `policies/schema.cedarschema`).

use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};

/// The Cedar namespace of the schema.
pub const NAMESPACE: &str = "Palisade";

fn type_name(name: &str) -> EntityTypeName {
    #[expect(
        clippy::expect_used,
        reason = "the names are constants of this module and always parse"
    )]
    EntityTypeName::from_str(&format!("{NAMESPACE}::{name}")).expect("valid entity type name")
}

static USER: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("User"));
static GROUP: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Group"));
static DATABASE: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Database"));
static SCHEMA: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Schema"));
static TABLE: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Table"));
static COLUMN: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Column"));
static ROLE: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Role"));
static ACTION: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Action"));

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// `User::"<issuer>|<subject>"`.
pub fn user(principal_id: &str) -> EntityUid {
    uid(&USER, principal_id)
}

/// `Group::"<name>"`.
pub fn group(name: &str) -> EntityUid {
    uid(&GROUP, name)
}

/// `Database::"<target>"`.
pub fn database(target: &str) -> EntityUid {
    uid(&DATABASE, target)
}

/// `Schema::"<target>/<schema>"`.
pub fn schema(target: &str, schema: &str) -> EntityUid {
    uid(&SCHEMA, &format!("{target}/{schema}"))
}

/// `Table::"<target>/<schema>.<table>"`.
pub fn table(target: &str, schema: &str, table: &str) -> EntityUid {
    uid(&TABLE, &format!("{target}/{schema}.{table}"))
}

/// `Column::"<target>/<schema>.<table>.<column>"`.
pub fn column(target: &str, schema: &str, table: &str, column: &str) -> EntityUid {
    uid(&COLUMN, &format!("{target}/{schema}.{table}.{column}"))
}

/// `Role::"<target>/<role>"`.
pub fn role(target: &str, role: &str) -> EntityUid {
    uid(&ROLE, &format!("{target}/{role}"))
}

/// `Action::"<name>"`.
pub fn action(name: &str) -> EntityUid {
    uid(&ACTION, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_schema() {
        assert_eq!(
            table("prod", "public", "orders").to_string(),
            r#"Palisade::Table::"prod/public.orders""#
        );
        assert_eq!(
            action("select").to_string(),
            r#"Palisade::Action::"select""#
        );
    }
}
