//! Reading names out of parse-tree nodes.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, ObjectType, RoleSpec, RoleSpecType, a_const};

/// The enum inside a node, if any.
pub(crate) fn inner(node: &Node) -> Option<&NodeEnum> {
    node.node.as_ref()
}

/// The text of a `String` node.
pub(crate) fn sval(node: &Node) -> Option<&str> {
    match inner(node) {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

/// The `String` items of a name list, in order (`schema`, `name`, …).
pub(crate) fn strings(nodes: &[Node]) -> impl Iterator<Item = &str> {
    nodes.iter().filter_map(sval)
}

/// A dotted name from a list of `String` nodes (`pg_catalog.lower`).
pub(crate) fn dotted(nodes: &[Node]) -> Option<String> {
    let mut out = String::new();
    for part in strings(nodes) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    (!out.is_empty()).then_some(out)
}

/// A role as PostgreSQL names it: the role name, or the keyword for
/// `CURRENT_USER`, `SESSION_USER`, `CURRENT_ROLE` and `PUBLIC`.
pub(crate) fn role_name(role: &RoleSpec) -> Option<String> {
    let name = match role.roletype() {
        RoleSpecType::RolespecCstring => {
            return (!role.rolename.is_empty()).then(|| role.rolename.clone());
        }
        RoleSpecType::RolespecCurrentRole => "current_role",
        RoleSpecType::RolespecCurrentUser => "current_user",
        RoleSpecType::RolespecSessionUser => "session_user",
        RoleSpecType::RolespecPublic => "public",
        RoleSpecType::Undefined => return None,
    };
    Some(name.to_owned())
}

/// The name of a non-relation object as the statement writes it: a schema
/// (`String`), a qualified name (`List`), a function (`ObjectWithArgs`), a
/// type (`TypeName`), a role (`RoleSpec`), a granted role (`AccessPriv`), a
/// large object (`Integer`), or the two types of a cast (`List` of types).
pub(crate) fn object_text(node: &NodeEnum) -> Option<String> {
    match node {
        NodeEnum::String(s) => (!s.sval.is_empty()).then(|| s.sval.clone()),
        NodeEnum::Integer(i) => Some(i.ival.to_string()),
        NodeEnum::List(list) => {
            if list.items.iter().all(|n| sval(n).is_some()) {
                dotted(&list.items)
            } else {
                let parts: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(inner)
                    .filter_map(object_text)
                    .collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            }
        }
        NodeEnum::ObjectWithArgs(o) => dotted(&o.objname),
        NodeEnum::TypeName(t) => dotted(&t.names),
        NodeEnum::RoleSpec(r) => role_name(r),
        NodeEnum::AccessPriv(p) => (!p.priv_name.is_empty()).then(|| p.priv_name.clone()),
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Sval(s)) => Some(s.sval.clone()),
            Some(a_const::Val::Ival(i)) => Some(i.ival.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Object types whose names are relations (`DROP TABLE`, `COMMENT ON VIEW`).
pub(crate) fn is_relation_type(t: ObjectType) -> bool {
    matches!(
        t,
        ObjectType::ObjectTable
            | ObjectType::ObjectView
            | ObjectType::ObjectMatview
            | ObjectType::ObjectIndex
            | ObjectType::ObjectSequence
            | ObjectType::ObjectForeignTable
    )
}

/// Object types named by a relation followed by one more name
/// (`COMMENT ON COLUMN t.c`, `DROP TRIGGER trg ON t`).
pub(crate) fn is_relation_member_type(t: ObjectType) -> bool {
    matches!(
        t,
        ObjectType::ObjectColumn
            | ObjectType::ObjectTabconstraint
            | ObjectType::ObjectTrigger
            | ObjectType::ObjectPolicy
            | ObjectType::ObjectRule
    )
}

/// Reads a relation name the way `'…'::regclass` does: dot-separated
/// identifiers, unquoted ones folded to lower case, `""` inside quotes.
/// Returns `(schema, name)`; `None` for text that is no such name.
pub(crate) fn regclass_name(text: &str) -> Option<(Option<String>, String)> {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => current.push(c),
            (false, '"') => {
                quoted = true;
                was_quoted = true;
            }
            (false, '.') => {
                parts.push(std::mem::take(&mut current));
                was_quoted = false;
            }
            (false, c) if c.is_whitespace() => {}
            (false, c) => current.extend(c.to_lowercase()),
        }
    }
    if quoted || (current.is_empty() && !was_quoted) {
        return None;
    }
    parts.push(current);
    if parts.len() > 3 || parts.iter().any(String::is_empty) {
        return None;
    }
    let name = parts.pop()?;
    Some((parts.pop(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regclass_text_folds_like_postgres() {
        assert_eq!(regclass_name("Seq"), Some((None, "seq".into())));
        assert_eq!(
            regclass_name("s.\"My\"\"Seq\""),
            Some((Some("s".into()), "My\"Seq".into()))
        );
        assert_eq!(
            regclass_name("db.s.t"),
            Some((Some("s".into()), "t".into()))
        );
        assert_eq!(regclass_name(""), None);
        assert_eq!(regclass_name("a..b"), None);
        assert_eq!(regclass_name("\"open"), None);
    }

    fn first_stmt(sql: &str) -> NodeEnum {
        let parsed = pg_query::parse(sql, 0).unwrap();
        parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .unwrap()
            .node
            .clone()
            .unwrap()
    }

    #[test]
    fn dotted_names_keep_their_parts() {
        let NodeEnum::DropStmt(drop) = first_stmt("DROP FUNCTION s.f(int)") else {
            unreachable!()
        };
        let name = object_text(inner(&drop.objects[0]).unwrap());
        assert_eq!(name.as_deref(), Some("s.f"));
    }

    #[test]
    fn role_keywords_are_named() {
        let NodeEnum::GrantRoleStmt(g) = first_stmt("GRANT admin TO CURRENT_USER, PUBLIC") else {
            unreachable!()
        };
        let names: Vec<_> = g
            .grantee_roles
            .iter()
            .filter_map(inner)
            .filter_map(object_text)
            .collect();
        assert_eq!(names, ["current_user", "public"]);
        let granted: Vec<_> = g
            .granted_roles
            .iter()
            .filter_map(inner)
            .filter_map(object_text)
            .collect();
        assert_eq!(granted, ["admin"]);
    }

    #[test]
    fn casts_name_both_types() {
        let NodeEnum::DropStmt(drop) = first_stmt("DROP CAST (text AS int)") else {
            unreachable!()
        };
        let name = object_text(inner(&drop.objects[0]).unwrap());
        assert_eq!(name.as_deref(), Some("text, pg_catalog.int4"));
    }
}
