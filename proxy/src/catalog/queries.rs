//! The catalog queries, kept apart so they can be read and reviewed as SQL.

/// Candidates for a relation name: `$1` name, `$2` schema or NULL for any schema. An unqualified
/// name may resolve to different schemas in different sessions (search_path), so every schema's
/// relation of that name must be cacheable, and all are dependencies.
pub const RELATION: &str = "\
SELECT c.oid, n.nspname::text AS nspname, c.relkind, c.relpersistence,
       COALESCE(pg_partition_root(c.oid)::oid, c.oid) AS root
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = $1 AND ($2::text IS NULL OR n.nspname = $2)";

/// Overload count and immutable overload count of a function: `$1` name, `$2` schema or NULL,
/// `$3` the call's argument count or NULL. Overloads that could take that many arguments
/// (exact count, variadic, or defaults) are all considered, since the catalog alone cannot tell
/// which one the call resolves to.
pub const FUNCTION_VOLATILITY: &str = "\
SELECT count(*), count(*) FILTER (WHERE p.provolatile = 'i')
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = $1 AND ($2::text IS NULL OR n.nspname = $2)
   AND ($3::int IS NULL OR p.pronargs = $3 OR p.provariadic <> 0 OR p.pronargdefaults > 0)";

/// Relations and functions a view's rewrite rule depends on: `$1` the view's oid.
pub const VIEW_DEPENDENCIES: &str = "\
SELECT DISTINCT d.refobjid AS oid,
       d.refclassid = 'pg_catalog.pg_proc'::regclass AS is_function,
       COALESCE(p.provolatile = 'i', false) AS immutable,
       COALESCE(n.nspname::text, '') AS nspname,
       COALESCE(c.relkind, 'r') AS relkind,
       COALESCE(c.relpersistence, 'p') AS relpersistence,
       COALESCE(pg_partition_root(c.oid)::oid, c.oid, d.refobjid) AS root
  FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_depend d
    ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
  LEFT JOIN pg_catalog.pg_class c
    ON d.refclassid = 'pg_catalog.pg_class'::regclass AND c.oid = d.refobjid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_proc p
    ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
 WHERE r.ev_class = $1 AND d.refobjid <> $1
   AND d.refclassid IN ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)";

/// Every relation of a partition tree (the table itself included): `$1` the table's oid.
pub const PARTITION_TREE: &str = "SELECT relid::oid FROM pg_catalog.pg_partition_tree($1)";
