//! The objects DDL, `GRANT` and ownership statements name.
//!
//! Relations named by range variables are found by the walker; this module
//! reads the names kept as plain name lists (`DROP TABLE a`, `COMMENT ON
//! COLUMN t.c`) and every non-relation object (schemas, roles, functions…).

use pg_query::NodeEnum;
use pg_query::protobuf::{CreateSchemaStmt, Node, ObjectType, RoleSpec};

use super::Class;
use crate::kind::StatementKind;
use crate::names::{
    dotted, inner, is_relation_member_type, is_relation_type, object_text, role_name, strings, sval,
};

/// `(schema or "", name)` of a relation written as a name list; with
/// `member`, the last name is a column/trigger/… of the relation.
fn list_relation(items: &[Node], member: bool) -> Option<(&str, &str)> {
    let parts: Vec<&str> = strings(items).collect();
    let parts = if member {
        parts.split_last()?.1
    } else {
        &parts[..]
    };
    match parts {
        [] => None,
        [name] => Some(("", name)),
        [.., schema, name] => Some((schema, name)),
    }
}

impl<'t> Class<'t> {
    fn role(&mut self, role: Option<&RoleSpec>) {
        self.object(role.and_then(role_name));
    }

    fn names(&mut self, nodes: &[Node]) {
        self.object(dotted(nodes));
    }

    fn each(&mut self, nodes: &[Node]) {
        for node in nodes.iter().filter_map(inner) {
            self.object(object_text(node));
        }
    }

    /// An object of type `objtype` written as `node`: relations go to
    /// `named_relations`, everything else to `objects`.
    fn typed_object(&mut self, objtype: ObjectType, node: Option<&'t Node>) {
        let Some(node) = node.and_then(inner) else {
            return;
        };
        let member = is_relation_member_type(objtype);
        if (is_relation_type(objtype) || member)
            && let NodeEnum::List(list) = node
        {
            if let Some(rel) = list_relation(&list.items, member) {
                self.named_relations.push(rel);
            }
            if member {
                let name = list.items.last().and_then(sval);
                self.object(name.map(str::to_owned));
            }
            return;
        }
        self.object(object_text(node));
    }
}

/// `CREATE`/`ALTER`/`DROP ROLE`: identity changes, naming the roles.
pub(super) fn role(node: &NodeEnum) -> Class<'_> {
    let mut c = Class::of(StatementKind::Role);
    match node {
        NodeEnum::CreateRoleStmt(r) => c.object_str(&r.role),
        NodeEnum::AlterRoleStmt(r) => c.role(r.role.as_ref()),
        NodeEnum::AlterRoleSetStmt(r) => {
            c.role(r.role.as_ref());
            c.object_str(&r.database);
        }
        NodeEnum::DropRoleStmt(r) => c.each(&r.roles),
        _ => {}
    }
    c
}

/// `CREATE SCHEMA s [AUTHORIZATION r] …`: its elements are created in `s`.
pub(super) fn schema(s: &CreateSchemaStmt) -> Class<'_> {
    let mut c = Class::of(StatementKind::Create);
    // `CREATE SCHEMA AUTHORIZATION joe` names the schema after the role.
    let schema: &str = if s.schemaname.is_empty() {
        s.authrole.as_ref().map_or("", |r| r.rolename.as_str())
    } else {
        &s.schemaname
    };
    c.object_str(schema);
    c.role(s.authrole.as_ref());
    c.schema_first = (!schema.is_empty()).then_some(schema);
    c
}

/// `GRANT`/`REVOKE`, `DROP`, `COMMENT`, renames and ownership changes.
pub(super) fn privileges_and_names(node: &NodeEnum) -> Class<'_> {
    use StatementKind as K;
    match node {
        NodeEnum::GrantStmt(g) => {
            let mut c = Class::of(if g.is_grant { K::Grant } else { K::Revoke });
            // Table and sequence targets are range variables: the walker has them.
            c.each(&g.objects);
            c.each(&g.grantees);
            c.role(g.grantor.as_ref());
            c
        }
        NodeEnum::GrantRoleStmt(g) => {
            let mut c = Class::of(if g.is_grant { K::Grant } else { K::Revoke });
            c.each(&g.granted_roles);
            c.each(&g.grantee_roles);
            c.role(g.grantor.as_ref());
            c
        }
        NodeEnum::AlterDefaultPrivilegesStmt(a) => {
            let is_grant = a.action.as_ref().is_none_or(|g| g.is_grant);
            let mut c = Class::of(if is_grant { K::Grant } else { K::Revoke });
            for option in a.options.iter().filter_map(inner) {
                if let NodeEnum::DefElem(d) = option {
                    match d.arg.as_deref().and_then(inner) {
                        Some(NodeEnum::List(list)) => c.each(&list.items),
                        Some(other) => c.object(object_text(other)),
                        None => {}
                    }
                }
            }
            if let Some(g) = &a.action {
                c.each(&g.grantees);
            }
            c
        }
        NodeEnum::DropStmt(d) => {
            let mut c = Class::of(K::Drop);
            for object in &d.objects {
                c.typed_object(d.remove_type(), Some(object));
            }
            c
        }
        NodeEnum::CommentStmt(s) => {
            let mut c = Class::of(K::Alter);
            c.typed_object(s.objtype(), s.object.as_deref());
            c
        }
        NodeEnum::SecLabelStmt(s) => {
            let mut c = Class::of(K::Alter);
            c.typed_object(s.objtype(), s.object.as_deref());
            c
        }
        NodeEnum::RenameStmt(r) => {
            let rename_type = r.rename_type();
            let kind = if rename_type == ObjectType::ObjectRole {
                K::Role
            } else {
                K::Alter
            };
            let mut c = Class::of(kind);
            match &r.relation {
                // The relation itself is a range variable; a renamed relation
                // also writes its new name, in the same schema.
                Some(rel) if is_relation_type(rename_type) => {
                    c.named_relations
                        .push((rel.schemaname.as_str(), r.newname.as_str()));
                }
                Some(_) => {
                    c.object_str(&r.subname);
                    c.object_str(&r.newname);
                }
                None => {
                    c.typed_object(rename_type, r.object.as_deref());
                    c.object_str(&r.subname);
                    c.object_str(&r.newname);
                }
            }
            c
        }
        NodeEnum::AlterObjectSchemaStmt(a) => {
            let mut c = Class::of(K::Alter);
            match &a.relation {
                Some(rel) => c
                    .named_relations
                    .push((a.newschema.as_str(), rel.relname.as_str())),
                None => c.typed_object(a.object_type(), a.object.as_deref()),
            }
            c.object_str(&a.newschema);
            c
        }
        NodeEnum::AlterOwnerStmt(a) => {
            let mut c = Class::of(K::Alter);
            c.typed_object(a.object_type(), a.object.as_deref());
            c.role(a.newowner.as_ref());
            c
        }
        NodeEnum::AlterObjectDependsStmt(a) => {
            let mut c = Class::of(K::Alter);
            c.typed_object(a.object_type(), a.object.as_deref());
            c.object(a.extname.as_ref().map(|e| e.sval.clone()));
            c
        }
        NodeEnum::AlterExtensionContentsStmt(a) => {
            let mut c = Class::of(K::Alter);
            c.object_str(&a.extname);
            c.typed_object(a.objtype(), a.object.as_deref());
            c
        }
        NodeEnum::DropOwnedStmt(d) => {
            let mut c = Class::of(K::Drop);
            c.each(&d.roles);
            c
        }
        NodeEnum::ReassignOwnedStmt(r) => {
            let mut c = Class::of(K::Alter);
            c.each(&r.roles);
            c.role(r.newrole.as_ref());
            c
        }
        _ => Class::of(K::Other),
    }
}

/// `CREATE …` of anything but roles, schemas, views and `CREATE TABLE AS`.
pub(super) fn create(node: &NodeEnum) -> Class<'_> {
    let mut c = Class::of(StatementKind::Create);
    match node {
        NodeEnum::CreateTableSpaceStmt(s) => {
            c.object_str(&s.tablespacename);
            c.role(s.owner.as_ref());
        }
        NodeEnum::CreateExtensionStmt(s) => c.object_str(&s.extname),
        NodeEnum::CreateFdwStmt(s) => c.object_str(&s.fdwname),
        NodeEnum::CreateForeignServerStmt(s) => {
            c.object_str(&s.servername);
            c.object_str(&s.fdwname);
        }
        NodeEnum::CreateForeignTableStmt(s) => c.object_str(&s.servername),
        NodeEnum::CreateUserMappingStmt(s) => {
            c.role(s.user.as_ref());
            c.object_str(&s.servername);
        }
        NodeEnum::ImportForeignSchemaStmt(s) => {
            c.object_str(&s.local_schema);
            c.object_str(&s.server_name);
            c.object_str(&s.remote_schema);
        }
        NodeEnum::CreatePolicyStmt(s) => c.object_str(&s.policy_name),
        NodeEnum::CreateAmStmt(s) => c.object_str(&s.amname),
        NodeEnum::CreateTrigStmt(s) => c.object_str(&s.trigname),
        NodeEnum::CreateEventTrigStmt(s) => c.object_str(&s.trigname),
        NodeEnum::CreatePlangStmt(s) => c.object_str(&s.plname),
        NodeEnum::DefineStmt(s) => c.names(&s.defnames),
        NodeEnum::CreateDomainStmt(s) => c.names(&s.domainname),
        NodeEnum::CreateOpClassStmt(s) => c.names(&s.opclassname),
        NodeEnum::CreateOpFamilyStmt(s) => c.names(&s.opfamilyname),
        NodeEnum::IndexStmt(s) => c.object_str(&s.idxname),
        NodeEnum::CreateStatsStmt(s) => c.names(&s.defnames),
        NodeEnum::CreateFunctionStmt(s) => c.names(&s.funcname),
        NodeEnum::RuleStmt(s) => c.object_str(&s.rulename),
        NodeEnum::CreateEnumStmt(s) => c.names(&s.type_name),
        NodeEnum::CreateRangeStmt(s) => c.names(&s.type_name),
        NodeEnum::CreatedbStmt(s) => c.object_str(&s.dbname),
        NodeEnum::CreateConversionStmt(s) => c.names(&s.conversion_name),
        NodeEnum::CreateCastStmt(s) => {
            c.object(s.sourcetype.as_ref().and_then(|t| dotted(&t.names)));
            c.object(s.targettype.as_ref().and_then(|t| dotted(&t.names)));
        }
        NodeEnum::CreateTransformStmt(s) => {
            c.object(s.type_name.as_ref().and_then(|t| dotted(&t.names)));
            c.object_str(&s.lang);
        }
        NodeEnum::CreatePublicationStmt(s) => c.object_str(&s.pubname),
        NodeEnum::CreateSubscriptionStmt(s) => c.object_str(&s.subname),
        _ => {}
    }
    c
}

/// `ALTER …` of anything but roles and the generic rename/owner/schema forms.
pub(super) fn alter(node: &NodeEnum) -> Class<'_> {
    let mut c = Class::of(StatementKind::Alter);
    match node {
        NodeEnum::AlterCollationStmt(s) => c.names(&s.collname),
        NodeEnum::AlterDomainStmt(s) => c.names(&s.type_name),
        NodeEnum::AlterTableSpaceOptionsStmt(s) => c.object_str(&s.tablespacename),
        NodeEnum::AlterTableMoveAllStmt(s) => {
            c.object_str(&s.orig_tablespacename);
            c.object_str(&s.new_tablespacename);
        }
        NodeEnum::AlterExtensionStmt(s) => c.object_str(&s.extname),
        NodeEnum::AlterFdwStmt(s) => c.object_str(&s.fdwname),
        NodeEnum::AlterForeignServerStmt(s) => c.object_str(&s.servername),
        NodeEnum::AlterUserMappingStmt(s) => {
            c.role(s.user.as_ref());
            c.object_str(&s.servername);
        }
        NodeEnum::AlterPolicyStmt(s) => c.object_str(&s.policy_name),
        NodeEnum::AlterEventTrigStmt(s) => c.object_str(&s.trigname),
        NodeEnum::AlterOpFamilyStmt(s) => c.names(&s.opfamilyname),
        NodeEnum::AlterStatsStmt(s) => c.names(&s.defnames),
        NodeEnum::AlterFunctionStmt(s) => {
            c.object(s.func.as_ref().and_then(|f| dotted(&f.objname)))
        }
        NodeEnum::AlterOperatorStmt(s) => {
            c.object(s.opername.as_ref().and_then(|f| dotted(&f.objname)))
        }
        NodeEnum::AlterTypeStmt(s) => c.names(&s.type_name),
        NodeEnum::AlterEnumStmt(s) => c.names(&s.type_name),
        NodeEnum::AlterDatabaseStmt(s) => c.object_str(&s.dbname),
        NodeEnum::AlterDatabaseRefreshCollStmt(s) => c.object_str(&s.dbname),
        NodeEnum::AlterDatabaseSetStmt(s) => c.object_str(&s.dbname),
        NodeEnum::AlterTsdictionaryStmt(s) => c.names(&s.dictname),
        NodeEnum::AlterTsconfigurationStmt(s) => c.names(&s.cfgname),
        NodeEnum::AlterPublicationStmt(s) => c.object_str(&s.pubname),
        NodeEnum::AlterSubscriptionStmt(s) => c.object_str(&s.subname),
        _ => {}
    }
    c
}

/// `DROP` forms that are not `DropStmt` (databases, tablespaces, …).
pub(super) fn drop(node: &NodeEnum) -> Class<'_> {
    let mut c = Class::of(StatementKind::Drop);
    match node {
        NodeEnum::DropTableSpaceStmt(s) => c.object_str(&s.tablespacename),
        NodeEnum::DropUserMappingStmt(s) => {
            c.role(s.user.as_ref());
            c.object_str(&s.servername);
        }
        NodeEnum::DropdbStmt(s) => c.object_str(&s.dbname),
        NodeEnum::DropSubscriptionStmt(s) => c.object_str(&s.subname),
        _ => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(sql: &str) -> (StatementKind, Vec<String>, Vec<(String, String)>) {
        let parsed = pg_query::parse(sql, 0).unwrap();
        let node = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .unwrap()
            .node
            .as_ref()
            .unwrap()
            .clone();
        let c = super::super::classify(&node);
        let rels = c
            .named_relations
            .iter()
            .map(|(s, n)| ((*s).to_owned(), (*n).to_owned()))
            .collect();
        (c.kind, c.objects, rels)
    }

    fn rel(schema: &str, name: &str) -> (String, String) {
        (schema.to_owned(), name.to_owned())
    }

    #[test]
    fn drop_table_names_every_relation() {
        let (kind, objects, rels) = class_of("DROP TABLE a, s.b CASCADE");
        assert_eq!(kind, StatementKind::Drop);
        assert!(objects.is_empty());
        assert_eq!(rels, [rel("", "a"), rel("s", "b")]);
    }

    #[test]
    fn drop_trigger_names_its_table() {
        let (_, objects, rels) = class_of("DROP TRIGGER trg ON s.t");
        assert_eq!(objects, ["trg"]);
        assert_eq!(rels, [rel("s", "t")]);
    }

    #[test]
    fn drop_of_other_objects_names_them() {
        assert_eq!(class_of("DROP SCHEMA a, b").1, ["a", "b"]);
        assert_eq!(class_of("DROP FUNCTION s.f(int), g").1, ["s.f", "g"]);
        assert_eq!(class_of("DROP DATABASE prod").1, ["prod"]);
    }

    #[test]
    fn comments_on_columns_write_the_table() {
        let (kind, _, rels) = class_of("COMMENT ON COLUMN t.c IS 'x'");
        assert_eq!(kind, StatementKind::Alter);
        assert_eq!(rels, [rel("", "t")]);
        assert_eq!(class_of("COMMENT ON SCHEMA s IS 'x'").1, ["s"]);
    }

    #[test]
    fn grants_name_objects_and_grantees() {
        let (kind, objects, _) = class_of("GRANT USAGE ON SCHEMA s TO alice, PUBLIC");
        assert_eq!(kind, StatementKind::Grant);
        assert_eq!(objects, ["s", "alice", "public"]);
        let (kind, objects, _) = class_of("REVOKE pg_read_server_files FROM bob");
        assert_eq!(kind, StatementKind::Revoke);
        assert_eq!(objects, ["pg_read_server_files", "bob"]);
        let (_, objects, _) = class_of("GRANT SELECT ON ALL TABLES IN SCHEMA prod TO x");
        assert_eq!(objects, ["prod", "x"]);
        let (kind, objects, _) =
            class_of("ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r");
        assert_eq!(kind, StatementKind::Grant);
        assert_eq!(objects, ["s", "r"]);
    }

    #[test]
    fn renames_write_old_and_new_relation() {
        let (kind, _, rels) = class_of("ALTER TABLE s.a RENAME TO b");
        assert_eq!(kind, StatementKind::Alter);
        assert_eq!(rels, [rel("s", "b")]);
        let (kind, objects, _) = class_of("ALTER ROLE a RENAME TO b");
        assert_eq!(kind, StatementKind::Role);
        assert_eq!(objects, ["a", "b"]);
        let (_, objects, _) = class_of("ALTER SCHEMA a RENAME TO b");
        assert_eq!(objects, ["a", "b"]);
    }

    #[test]
    fn set_schema_writes_the_moved_relation() {
        let (_, objects, rels) = class_of("ALTER TABLE t SET SCHEMA archive");
        assert_eq!(rels, [rel("archive", "t")]);
        assert_eq!(objects, ["archive"]);
    }

    #[test]
    fn create_names_the_object() {
        assert_eq!(
            class_of("CREATE FUNCTION s.f() RETURNS int AS 'select 1' LANGUAGE sql").1,
            ["s.f"]
        );
        assert_eq!(class_of("CREATE EXTENSION dblink").1, ["dblink"]);
        assert_eq!(class_of("CREATE INDEX idx ON t (a)").1, ["idx"]);
        assert_eq!(
            class_of("IMPORT FOREIGN SCHEMA r FROM SERVER srv INTO l").0,
            StatementKind::Create
        );
    }

    #[test]
    fn ownership_changes_name_the_new_owner() {
        let (kind, objects, _) = class_of("ALTER SCHEMA s OWNER TO postgres");
        assert_eq!(kind, StatementKind::Alter);
        assert_eq!(objects, ["s", "postgres"]);
    }
}
