//! What a statement is, from its top-level node: kind, named objects, and
//! the session effects the agent must follow (transactions, `COPY`,
//! prepared statements, `search_path`).
//!
//! Relations and functions found anywhere in the tree are the walker's job
//! (`walk`); this module only reads the statement's own fields.

mod objects;
pub(crate) mod session;
mod wrappers;

use pg_query::NodeEnum;
use pg_query::protobuf::VariableSetStmt;

use crate::kind::StatementKind;
use crate::statement::{CopyInfo, TransactionOp};

/// How deep wrappers may nest (`EXPLAIN ANALYZE CREATE TABLE AS EXECUTE p`
/// is three); the grammar allows no more, this only bounds the recursion.
const MAX_WRAPPING: u8 = 4;

/// The facts of one statement that come from its top-level node.
#[derive(Debug)]
pub(crate) struct Class<'t> {
    /// The statement's own kind, before nested data-modifying parts raise it.
    pub(crate) kind: StatementKind,
    /// The kind of the carried statement (`PREPARE`, `EXPLAIN`, …), before
    /// nested data-modifying parts raise it.
    pub(crate) inner_kind: Option<StatementKind>,
    /// Non-relation objects named, as written, in statement order.
    pub(crate) objects: Vec<String>,
    /// Relations named by name lists rather than range variables
    /// (`DROP TABLE a, b`, `COMMENT ON COLUMN t.c`): `(schema or "", name)`,
    /// all written.
    pub(crate) named_relations: Vec<(&'t str, &'t str)>,
    /// Transaction control.
    pub(crate) transaction: Option<TransactionOp>,
    /// `COPY` details.
    pub(crate) copy: Option<CopyInfo>,
    /// `PREPARE name`.
    pub(crate) prepare: Option<String>,
    /// `EXECUTE name`, also when carried.
    pub(crate) execute: Option<String>,
    /// `DEALLOCATE name` / `DEALLOCATE ALL`.
    pub(crate) deallocate: Option<Option<String>>,
    /// The search path left behind.
    pub(crate) search_path: Option<Vec<String>>,
    /// `CREATE SCHEMA s …`: its elements resolve in `s` first.
    pub(crate) schema_first: Option<&'t str>,
    /// Whether plain `EXPLAIN` only plans the carried statement.
    pub(crate) plan_only: bool,
}

impl<'t> Class<'t> {
    pub(crate) fn of(kind: StatementKind) -> Self {
        Class {
            kind,
            inner_kind: None,
            objects: Vec::new(),
            named_relations: Vec::new(),
            transaction: None,
            copy: None,
            prepare: None,
            execute: None,
            deallocate: None,
            search_path: None,
            schema_first: None,
            plan_only: false,
        }
    }

    pub(crate) fn object(&mut self, name: Option<String>) {
        if let Some(name) = name.filter(|n| !n.is_empty())
            && !self.objects.contains(&name)
        {
            self.objects.push(name);
        }
    }

    /// A class naming one object.
    pub(crate) fn named(kind: StatementKind, name: &str) -> Self {
        let mut c = Class::of(kind);
        c.object_str(name);
        c
    }

    pub(crate) fn object_str(&mut self, name: &str) {
        if !name.is_empty() {
            self.object(Some(name.to_owned()));
        }
    }
}

/// Classifies one top-level statement node.
pub(crate) fn classify(node: &NodeEnum) -> Class<'_> {
    classify_at(node, 0)
}

fn classify_at(node: &NodeEnum, depth: u8) -> Class<'_> {
    use StatementKind as K;
    match node {
        NodeEnum::SelectStmt(s) => wrappers::select(s),
        NodeEnum::InsertStmt(_) => Class::of(K::Insert),
        NodeEnum::UpdateStmt(_) => Class::of(K::Update),
        NodeEnum::DeleteStmt(_) => Class::of(K::Delete),
        NodeEnum::MergeStmt(_) => Class::of(K::Merge),
        NodeEnum::CopyStmt(c) => session::copy(c),
        NodeEnum::TransactionStmt(t) => session::transaction(t),
        NodeEnum::VariableSetStmt(v) => session::set(v),
        NodeEnum::VariableShowStmt(v) => Class::named(K::Show, &v.name),
        NodeEnum::ConstraintsSetStmt(_) => Class::of(K::Set),
        NodeEnum::DiscardStmt(d) => session::discard(d),
        NodeEnum::AlterSystemStmt(_) => Class::named(K::Alter, "system"),
        NodeEnum::PrepareStmt(p) => wrappers::prepare(p, depth),
        NodeEnum::ExecuteStmt(e) => session::execute(e),
        NodeEnum::DeallocateStmt(d) => session::deallocate(d),
        NodeEnum::ExplainStmt(e) => wrappers::explain(e, depth),
        NodeEnum::DeclareCursorStmt(d) => wrappers::declare(d, depth),
        NodeEnum::ClosePortalStmt(_) | NodeEnum::FetchStmt(_) => Class::of(K::Cursor),
        NodeEnum::CreateTableAsStmt(t) => wrappers::create_table_as(t, depth),
        NodeEnum::ViewStmt(_) => wrappers::view(),
        NodeEnum::CallStmt(_) => Class::of(K::Call),
        NodeEnum::DoStmt(_) => Class::of(K::Do),
        NodeEnum::ListenStmt(l) => Class::named(K::Listen, &l.conditionname),
        NodeEnum::UnlistenStmt(l) => Class::named(K::Listen, &l.conditionname),
        NodeEnum::NotifyStmt(n) => Class::named(K::Notify, &n.conditionname),
        NodeEnum::LoadStmt(l) => Class::named(K::Other, &l.filename),
        NodeEnum::LockStmt(_) | NodeEnum::PlassignStmt(_) | NodeEnum::ReturnStmt(_) => {
            Class::of(K::Other)
        }
        NodeEnum::CheckPointStmt(_)
        | NodeEnum::VacuumStmt(_)
        | NodeEnum::ClusterStmt(_)
        | NodeEnum::RefreshMatViewStmt(_) => Class::of(K::Maintenance),
        NodeEnum::ReindexStmt(r) => Class::named(K::Maintenance, &r.name),
        NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_) => objects::role(node),
        NodeEnum::CreateSchemaStmt(s) => objects::schema(s),
        NodeEnum::GrantStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::AlterDefaultPrivilegesStmt(_)
        | NodeEnum::DropStmt(_)
        | NodeEnum::CommentStmt(_)
        | NodeEnum::SecLabelStmt(_)
        | NodeEnum::RenameStmt(_)
        | NodeEnum::AlterObjectSchemaStmt(_)
        | NodeEnum::AlterOwnerStmt(_)
        | NodeEnum::AlterObjectDependsStmt(_)
        | NodeEnum::AlterExtensionContentsStmt(_)
        | NodeEnum::DropOwnedStmt(_)
        | NodeEnum::ReassignOwnedStmt(_) => objects::privileges_and_names(node),
        NodeEnum::CreateStmt(_)
        | NodeEnum::CreateTableSpaceStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::CreateFdwStmt(_)
        | NodeEnum::CreateForeignServerStmt(_)
        | NodeEnum::CreateForeignTableStmt(_)
        | NodeEnum::CreateUserMappingStmt(_)
        | NodeEnum::ImportForeignSchemaStmt(_)
        | NodeEnum::CreatePolicyStmt(_)
        | NodeEnum::CreateAmStmt(_)
        | NodeEnum::CreateTrigStmt(_)
        | NodeEnum::CreateEventTrigStmt(_)
        | NodeEnum::CreatePlangStmt(_)
        | NodeEnum::CreateSeqStmt(_)
        | NodeEnum::DefineStmt(_)
        | NodeEnum::CreateDomainStmt(_)
        | NodeEnum::CreateOpClassStmt(_)
        | NodeEnum::CreateOpFamilyStmt(_)
        | NodeEnum::IndexStmt(_)
        | NodeEnum::CreateStatsStmt(_)
        | NodeEnum::CreateFunctionStmt(_)
        | NodeEnum::RuleStmt(_)
        | NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateEnumStmt(_)
        | NodeEnum::CreateRangeStmt(_)
        | NodeEnum::CreatedbStmt(_)
        | NodeEnum::CreateConversionStmt(_)
        | NodeEnum::CreateCastStmt(_)
        | NodeEnum::CreateTransformStmt(_)
        | NodeEnum::CreatePublicationStmt(_)
        | NodeEnum::CreateSubscriptionStmt(_) => objects::create(node),
        NodeEnum::AlterTableStmt(_)
        | NodeEnum::AlterCollationStmt(_)
        | NodeEnum::AlterDomainStmt(_)
        | NodeEnum::AlterTableSpaceOptionsStmt(_)
        | NodeEnum::AlterTableMoveAllStmt(_)
        | NodeEnum::AlterExtensionStmt(_)
        | NodeEnum::AlterFdwStmt(_)
        | NodeEnum::AlterForeignServerStmt(_)
        | NodeEnum::AlterUserMappingStmt(_)
        | NodeEnum::AlterPolicyStmt(_)
        | NodeEnum::AlterEventTrigStmt(_)
        | NodeEnum::AlterSeqStmt(_)
        | NodeEnum::AlterOpFamilyStmt(_)
        | NodeEnum::AlterStatsStmt(_)
        | NodeEnum::AlterFunctionStmt(_)
        | NodeEnum::AlterOperatorStmt(_)
        | NodeEnum::AlterTypeStmt(_)
        | NodeEnum::AlterEnumStmt(_)
        | NodeEnum::AlterDatabaseStmt(_)
        | NodeEnum::AlterDatabaseRefreshCollStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::AlterTsdictionaryStmt(_)
        | NodeEnum::AlterTsconfigurationStmt(_)
        | NodeEnum::AlterPublicationStmt(_)
        | NodeEnum::AlterSubscriptionStmt(_)
        | NodeEnum::ReplicaIdentityStmt(_) => objects::alter(node),
        NodeEnum::DropTableSpaceStmt(_)
        | NodeEnum::DropUserMappingStmt(_)
        | NodeEnum::DropdbStmt(_)
        | NodeEnum::DropSubscriptionStmt(_) => objects::drop(node),
        NodeEnum::TruncateStmt(_) => Class::of(K::Truncate),
        NodeEnum::RawStmt(r) => wrappers::carried(r.stmt.as_deref(), depth),
        NodeEnum::SetOperationStmt(_) => Class::of(K::Select),
        // Not statements: never at the top of a statement.
        NodeEnum::AArrayExpr(_)
        | NodeEnum::AConst(_)
        | NodeEnum::AExpr(_)
        | NodeEnum::AIndices(_)
        | NodeEnum::AIndirection(_)
        | NodeEnum::AStar(_)
        | NodeEnum::AccessPriv(_)
        | NodeEnum::Aggref(_)
        | NodeEnum::Alias(_)
        | NodeEnum::AlterTableCmd(_)
        | NodeEnum::AlternativeSubPlan(_)
        | NodeEnum::ArrayCoerceExpr(_)
        | NodeEnum::ArrayExpr(_)
        | NodeEnum::AtalterConstraint(_)
        | NodeEnum::BitString(_)
        | NodeEnum::BoolExpr(_)
        | NodeEnum::Boolean(_)
        | NodeEnum::BooleanTest(_)
        | NodeEnum::CallContext(_)
        | NodeEnum::CaseExpr(_)
        | NodeEnum::CaseTestExpr(_)
        | NodeEnum::CaseWhen(_)
        | NodeEnum::CoalesceExpr(_)
        | NodeEnum::CoerceToDomain(_)
        | NodeEnum::CoerceToDomainValue(_)
        | NodeEnum::CoerceViaIo(_)
        | NodeEnum::CollateClause(_)
        | NodeEnum::CollateExpr(_)
        | NodeEnum::ColumnDef(_)
        | NodeEnum::ColumnRef(_)
        | NodeEnum::CommonTableExpr(_)
        | NodeEnum::Constraint(_)
        | NodeEnum::ConvertRowtypeExpr(_)
        | NodeEnum::CreateOpClassItem(_)
        | NodeEnum::CtecycleClause(_)
        | NodeEnum::CtesearchClause(_)
        | NodeEnum::CurrentOfExpr(_)
        | NodeEnum::DefElem(_)
        | NodeEnum::DistinctExpr(_)
        | NodeEnum::FieldSelect(_)
        | NodeEnum::FieldStore(_)
        | NodeEnum::Float(_)
        | NodeEnum::FromExpr(_)
        | NodeEnum::FuncCall(_)
        | NodeEnum::FuncExpr(_)
        | NodeEnum::FunctionParameter(_)
        | NodeEnum::GroupingFunc(_)
        | NodeEnum::GroupingSet(_)
        | NodeEnum::IndexElem(_)
        | NodeEnum::InferClause(_)
        | NodeEnum::InferenceElem(_)
        | NodeEnum::InlineCodeBlock(_)
        | NodeEnum::IntList(_)
        | NodeEnum::Integer(_)
        | NodeEnum::IntoClause(_)
        | NodeEnum::JoinExpr(_)
        | NodeEnum::JsonAggConstructor(_)
        | NodeEnum::JsonArgument(_)
        | NodeEnum::JsonArrayAgg(_)
        | NodeEnum::JsonArrayConstructor(_)
        | NodeEnum::JsonArrayQueryConstructor(_)
        | NodeEnum::JsonBehavior(_)
        | NodeEnum::JsonConstructorExpr(_)
        | NodeEnum::JsonExpr(_)
        | NodeEnum::JsonFormat(_)
        | NodeEnum::JsonFuncExpr(_)
        | NodeEnum::JsonIsPredicate(_)
        | NodeEnum::JsonKeyValue(_)
        | NodeEnum::JsonObjectAgg(_)
        | NodeEnum::JsonObjectConstructor(_)
        | NodeEnum::JsonOutput(_)
        | NodeEnum::JsonParseExpr(_)
        | NodeEnum::JsonReturning(_)
        | NodeEnum::JsonScalarExpr(_)
        | NodeEnum::JsonSerializeExpr(_)
        | NodeEnum::JsonTable(_)
        | NodeEnum::JsonTableColumn(_)
        | NodeEnum::JsonTablePath(_)
        | NodeEnum::JsonTablePathScan(_)
        | NodeEnum::JsonTablePathSpec(_)
        | NodeEnum::JsonTableSiblingJoin(_)
        | NodeEnum::JsonValueExpr(_)
        | NodeEnum::List(_)
        | NodeEnum::LockingClause(_)
        | NodeEnum::MergeAction(_)
        | NodeEnum::MergeSupportFunc(_)
        | NodeEnum::MergeWhenClause(_)
        | NodeEnum::MinMaxExpr(_)
        | NodeEnum::MultiAssignRef(_)
        | NodeEnum::NamedArgExpr(_)
        | NodeEnum::NextValueExpr(_)
        | NodeEnum::NullIfExpr(_)
        | NodeEnum::NullTest(_)
        | NodeEnum::ObjectWithArgs(_)
        | NodeEnum::OidList(_)
        | NodeEnum::OnConflictClause(_)
        | NodeEnum::OnConflictExpr(_)
        | NodeEnum::OpExpr(_)
        | NodeEnum::Param(_)
        | NodeEnum::ParamRef(_)
        | NodeEnum::PartitionBoundSpec(_)
        | NodeEnum::PartitionCmd(_)
        | NodeEnum::PartitionElem(_)
        | NodeEnum::PartitionRangeDatum(_)
        | NodeEnum::PartitionSpec(_)
        | NodeEnum::PublicationObjSpec(_)
        | NodeEnum::PublicationTable(_)
        | NodeEnum::Query(_)
        | NodeEnum::RangeFunction(_)
        | NodeEnum::RangeSubselect(_)
        | NodeEnum::RangeTableFunc(_)
        | NodeEnum::RangeTableFuncCol(_)
        | NodeEnum::RangeTableSample(_)
        | NodeEnum::RangeTblEntry(_)
        | NodeEnum::RangeTblFunction(_)
        | NodeEnum::RangeTblRef(_)
        | NodeEnum::RangeVar(_)
        | NodeEnum::RelabelType(_)
        | NodeEnum::ResTarget(_)
        | NodeEnum::ReturningClause(_)
        | NodeEnum::ReturningExpr(_)
        | NodeEnum::ReturningOption(_)
        | NodeEnum::RoleSpec(_)
        | NodeEnum::RowCompareExpr(_)
        | NodeEnum::RowExpr(_)
        | NodeEnum::RowMarkClause(_)
        | NodeEnum::RtepermissionInfo(_)
        | NodeEnum::ScalarArrayOpExpr(_)
        | NodeEnum::SetToDefault(_)
        | NodeEnum::SortBy(_)
        | NodeEnum::SortGroupClause(_)
        | NodeEnum::SqlvalueFunction(_)
        | NodeEnum::StatsElem(_)
        | NodeEnum::String(_)
        | NodeEnum::SubLink(_)
        | NodeEnum::SubPlan(_)
        | NodeEnum::SubscriptingRef(_)
        | NodeEnum::TableFunc(_)
        | NodeEnum::TableLikeClause(_)
        | NodeEnum::TableSampleClause(_)
        | NodeEnum::TargetEntry(_)
        | NodeEnum::TriggerTransition(_)
        | NodeEnum::TypeCast(_)
        | NodeEnum::TypeName(_)
        | NodeEnum::VacuumRelation(_)
        | NodeEnum::Var(_)
        | NodeEnum::WindowClause(_)
        | NodeEnum::WindowDef(_)
        | NodeEnum::WindowFunc(_)
        | NodeEnum::WindowFuncRunCondition(_)
        | NodeEnum::WithCheckOption(_)
        | NodeEnum::WithClause(_)
        | NodeEnum::XmlExpr(_)
        | NodeEnum::XmlSerialize(_) => Class::of(K::Other),
    }
}

/// Whether a `SET`-like statement changes identity (`SET ROLE`,
/// `SET SESSION AUTHORIZATION`, also written as `SET "role" = …`).
pub(crate) fn sets_identity(v: &VariableSetStmt) -> bool {
    v.name.eq_ignore_ascii_case("role") || v.name.eq_ignore_ascii_case("session_authorization")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(sql: &str) -> (StatementKind, Option<StatementKind>, Vec<String>) {
        let parsed = pg_query::parse(sql, 0).unwrap();
        let node = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .unwrap()
            .node
            .as_ref()
            .unwrap()
            .clone();
        let c = classify(&node);
        (c.kind, c.inner_kind, c.objects)
    }

    #[test]
    fn wrappers_take_the_kind_they_run() {
        assert_eq!(
            class_of("PREPARE p AS DELETE FROM t").0,
            StatementKind::Delete
        );
        assert_eq!(
            class_of("EXPLAIN ANALYZE DELETE FROM t").0,
            StatementKind::Delete
        );
        assert_eq!(
            class_of("EXPLAIN (ANALYZE off) DELETE FROM t").0,
            StatementKind::Explain
        );
        assert_eq!(
            class_of("EXPLAIN DELETE FROM t").1,
            Some(StatementKind::Delete)
        );
        assert_eq!(
            class_of("DECLARE c CURSOR FOR SELECT 1"),
            (StatementKind::Cursor, Some(StatementKind::Select), vec![])
        );
    }

    #[test]
    fn select_into_creates_a_table() {
        assert_eq!(
            class_of("SELECT * INTO t2 FROM t"),
            (StatementKind::Create, Some(StatementKind::Select), vec![])
        );
    }

    #[test]
    fn identity_changes_are_role_statements() {
        for sql in [
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "RESET ROLE",
            "SET \"ROLE\" TO postgres",
            "SET LOCAL role = 'postgres'",
            "ALTER ROLE x PASSWORD 'p'",
            "CREATE USER u",
            "DROP ROLE a, b",
            "ALTER USER x SET search_path = a",
        ] {
            assert_eq!(class_of(sql).0, StatementKind::Role, "{sql}");
        }
        assert_eq!(class_of("RESET ALL").0, StatementKind::Set);
    }

    #[test]
    fn objects_are_named_as_written() {
        assert_eq!(class_of("ALTER ROLE x PASSWORD 'p'").2, ["x"]);
        assert_eq!(class_of("SET ROLE postgres").2, ["postgres"]);
        assert_eq!(
            class_of("ALTER SYSTEM SET wal_level = minimal").2,
            ["system"]
        );
        assert_eq!(
            class_of("CREATE SCHEMA s AUTHORIZATION bob").2,
            ["s", "bob"]
        );
        assert_eq!(class_of("DROP ROLE a, b").2, ["a", "b"]);
    }
}
