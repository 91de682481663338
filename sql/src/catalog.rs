//! The relations of schema `pg_catalog` in PostgreSQL 15 to 18.
//!
//! PostgreSQL searches `pg_catalog` before the search path unless the path
//! names it explicitly, and nobody can create relations there, so an
//! unqualified `pg_class` is always `pg_catalog.pg_class`.

/// First PostgreSQL major version this crate supports; relations present
/// since then exist on every supported server.
const OLDEST_SUPPORTED: u8 = 15;

/// `(name, first major version that has it)`, sorted by name.
///
/// Taken from `pg_class` of a PostgreSQL 15 server (tables, views) plus the
/// views added by 16 (`pg_stat_io`), 17 (`pg_stat_checkpointer`,
/// `pg_wait_events`) and 18 (`pg_aios`, `pg_dsm_registry_allocations`,
/// `pg_shmem_allocations_numa`).
const RELATIONS: &[(&str, u8)] = &[
    ("pg_aggregate", 15),
    ("pg_aios", 18),
    ("pg_am", 15),
    ("pg_amop", 15),
    ("pg_amproc", 15),
    ("pg_attrdef", 15),
    ("pg_attribute", 15),
    ("pg_auth_members", 15),
    ("pg_authid", 15),
    ("pg_available_extension_versions", 15),
    ("pg_available_extensions", 15),
    ("pg_backend_memory_contexts", 15),
    ("pg_cast", 15),
    ("pg_class", 15),
    ("pg_collation", 15),
    ("pg_config", 15),
    ("pg_constraint", 15),
    ("pg_conversion", 15),
    ("pg_cursors", 15),
    ("pg_database", 15),
    ("pg_db_role_setting", 15),
    ("pg_default_acl", 15),
    ("pg_depend", 15),
    ("pg_description", 15),
    ("pg_dsm_registry_allocations", 18),
    ("pg_enum", 15),
    ("pg_event_trigger", 15),
    ("pg_extension", 15),
    ("pg_file_settings", 15),
    ("pg_foreign_data_wrapper", 15),
    ("pg_foreign_server", 15),
    ("pg_foreign_table", 15),
    ("pg_group", 15),
    ("pg_hba_file_rules", 15),
    ("pg_ident_file_mappings", 15),
    ("pg_index", 15),
    ("pg_indexes", 15),
    ("pg_inherits", 15),
    ("pg_init_privs", 15),
    ("pg_language", 15),
    ("pg_largeobject", 15),
    ("pg_largeobject_metadata", 15),
    ("pg_locks", 15),
    ("pg_matviews", 15),
    ("pg_namespace", 15),
    ("pg_opclass", 15),
    ("pg_operator", 15),
    ("pg_opfamily", 15),
    ("pg_parameter_acl", 15),
    ("pg_partitioned_table", 15),
    ("pg_policies", 15),
    ("pg_policy", 15),
    ("pg_prepared_statements", 15),
    ("pg_prepared_xacts", 15),
    ("pg_proc", 15),
    ("pg_publication", 15),
    ("pg_publication_namespace", 15),
    ("pg_publication_rel", 15),
    ("pg_publication_tables", 15),
    ("pg_range", 15),
    ("pg_replication_origin", 15),
    ("pg_replication_origin_status", 15),
    ("pg_replication_slots", 15),
    ("pg_rewrite", 15),
    ("pg_roles", 15),
    ("pg_rules", 15),
    ("pg_seclabel", 15),
    ("pg_seclabels", 15),
    ("pg_sequence", 15),
    ("pg_sequences", 15),
    ("pg_settings", 15),
    ("pg_shadow", 15),
    ("pg_shdepend", 15),
    ("pg_shdescription", 15),
    ("pg_shmem_allocations", 15),
    ("pg_shmem_allocations_numa", 18),
    ("pg_shseclabel", 15),
    ("pg_stat_activity", 15),
    ("pg_stat_all_indexes", 15),
    ("pg_stat_all_tables", 15),
    ("pg_stat_archiver", 15),
    ("pg_stat_bgwriter", 15),
    ("pg_stat_checkpointer", 17),
    ("pg_stat_database", 15),
    ("pg_stat_database_conflicts", 15),
    ("pg_stat_gssapi", 15),
    ("pg_stat_io", 16),
    ("pg_stat_progress_analyze", 15),
    ("pg_stat_progress_basebackup", 15),
    ("pg_stat_progress_cluster", 15),
    ("pg_stat_progress_copy", 15),
    ("pg_stat_progress_create_index", 15),
    ("pg_stat_progress_vacuum", 15),
    ("pg_stat_recovery_prefetch", 15),
    ("pg_stat_replication", 15),
    ("pg_stat_replication_slots", 15),
    ("pg_stat_slru", 15),
    ("pg_stat_ssl", 15),
    ("pg_stat_subscription", 15),
    ("pg_stat_subscription_stats", 15),
    ("pg_stat_sys_indexes", 15),
    ("pg_stat_sys_tables", 15),
    ("pg_stat_user_functions", 15),
    ("pg_stat_user_indexes", 15),
    ("pg_stat_user_tables", 15),
    ("pg_stat_wal", 15),
    ("pg_stat_wal_receiver", 15),
    ("pg_stat_xact_all_tables", 15),
    ("pg_stat_xact_sys_tables", 15),
    ("pg_stat_xact_user_functions", 15),
    ("pg_stat_xact_user_tables", 15),
    ("pg_statio_all_indexes", 15),
    ("pg_statio_all_sequences", 15),
    ("pg_statio_all_tables", 15),
    ("pg_statio_sys_indexes", 15),
    ("pg_statio_sys_sequences", 15),
    ("pg_statio_sys_tables", 15),
    ("pg_statio_user_indexes", 15),
    ("pg_statio_user_sequences", 15),
    ("pg_statio_user_tables", 15),
    ("pg_statistic", 15),
    ("pg_statistic_ext", 15),
    ("pg_statistic_ext_data", 15),
    ("pg_stats", 15),
    ("pg_stats_ext", 15),
    ("pg_stats_ext_exprs", 15),
    ("pg_subscription", 15),
    ("pg_subscription_rel", 15),
    ("pg_tables", 15),
    ("pg_tablespace", 15),
    ("pg_timezone_abbrevs", 15),
    ("pg_timezone_names", 15),
    ("pg_transform", 15),
    ("pg_trigger", 15),
    ("pg_ts_config", 15),
    ("pg_ts_config_map", 15),
    ("pg_ts_dict", 15),
    ("pg_ts_parser", 15),
    ("pg_ts_template", 15),
    ("pg_type", 15),
    ("pg_user", 15),
    ("pg_user_mapping", 15),
    ("pg_user_mappings", 15),
    ("pg_views", 15),
    ("pg_wait_events", 17),
];

/// How an unqualified relation name relates to `pg_catalog`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CatalogName {
    /// Not a `pg_catalog` relation on any supported server.
    No,
    /// A `pg_catalog` relation on every supported server.
    Always,
    /// A `pg_catalog` relation only on newer servers; on older ones the name
    /// resolves through the search path, so both must be reported.
    Newer,
}

/// Classifies an unqualified relation name.
pub(crate) fn catalog_name(name: &str) -> CatalogName {
    if !name.starts_with("pg_") {
        return CatalogName::No;
    }
    match RELATIONS.binary_search_by(|(n, _)| (*n).cmp(name)) {
        Ok(at) => match RELATIONS.get(at) {
            Some((_, since)) if *since <= OLDEST_SUPPORTED => CatalogName::Always,
            Some(_) => CatalogName::Newer,
            None => CatalogName::No,
        },
        Err(_) => CatalogName::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_unique_for_binary_search() {
        for pair in RELATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} >= {}", pair[0].0, pair[1].0);
        }
    }

    #[test]
    fn every_name_is_found() {
        for (name, since) in RELATIONS {
            let expected = if *since <= OLDEST_SUPPORTED {
                CatalogName::Always
            } else {
                CatalogName::Newer
            };
            assert_eq!(catalog_name(name), expected, "{name}");
        }
    }

    #[test]
    fn well_known_relations() {
        for name in [
            "pg_class",
            "pg_namespace",
            "pg_attribute",
            "pg_type",
            "pg_proc",
            "pg_index",
            "pg_constraint",
            "pg_roles",
            "pg_user",
            "pg_settings",
            "pg_stat_activity",
            "pg_tables",
            "pg_views",
            "pg_database",
            "pg_description",
            "pg_am",
            "pg_inherits",
            "pg_attrdef",
            "pg_collation",
            "pg_extension",
            "pg_policy",
            "pg_publication",
            "pg_authid",
            "pg_shadow",
            "pg_largeobject",
            "pg_statistic",
            "pg_hba_file_rules",
        ] {
            assert_eq!(catalog_name(name), CatalogName::Always, "{name}");
        }
        assert_eq!(catalog_name("pg_stat_io"), CatalogName::Newer);
        assert_eq!(catalog_name("pg_aios"), CatalogName::Newer);
    }

    #[test]
    fn other_names_are_not_catalog_relations() {
        for name in [
            "users",
            "pg_classes",
            "pg_",
            "PG_CLASS",
            "pg_stat_statements",
            "",
        ] {
            assert_eq!(catalog_name(name), CatalogName::No, "{name}");
        }
    }
}
