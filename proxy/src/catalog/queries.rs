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

/// Overload count, immutable overload count, count of overloads outside `pg_catalog` and their
/// bodies of a function: `$1` name, `$2` schema or NULL,
/// `$3` the call's argument count or NULL. Overloads that could take that many arguments
/// (exact count, variadic, or defaults) are all considered, since the catalog alone cannot tell
/// which one the call resolves to.
pub const FUNCTION_VOLATILITY: &str = "\
SELECT count(*), count(*) FILTER (WHERE p.provolatile = 'i'),
       count(*) FILTER (WHERE n.nspname <> 'pg_catalog'),
       string_agg(p.prosrc, ' ') FILTER (WHERE n.nspname <> 'pg_catalog')
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

/// Every descendant of a table, through partitioning and through table inheritance alike
/// (`pg_inherits` records both), with its kind and persistence: `$1` the table's oid. A read of
/// the table sees the rows of all of them, and a logical-replication publication reports a
/// change to a descendant under the descendant (or, with `publish_via_partition_root`, under
/// the partition root).
pub const DESCENDANTS: &str = "\
WITH RECURSIVE tree(oid) AS (
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = $1::oid
  UNION
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.oid
)
SELECT c.oid, c.relkind, c.relpersistence
  FROM tree JOIN pg_catalog.pg_class c ON c.oid = tree.oid";

/// A digest of everything in the catalog that can change what a cached result may show, or to
/// whom, or whether its changes are seen: relations (names, kinds, persistence, row security,
/// ACLs; for materialized views the storage too, since a plain `REFRESH` swaps it without any
/// row change a decoder reports), columns, policies, role memberships and attributes, function
/// volatility, view rules, schema and database ACLs, and the publication `$1` (NULL without
/// `--publication`): its actions and the tables it carries. Temporary relations are left out
/// (they are never cached and come and go often).
pub const FINGERPRINT: &str = "\
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(',', c.oid, c.relname, c.relnamespace, c.relkind, c.relpersistence,
                               c.relrowsecurity, c.relforcerowsecurity, c.relacl::text,
                               c.relreplident, c.relispartition,
                               CASE WHEN c.relkind = 'm' THEN c.relfilenode END), ';' ORDER BY c.oid)
     FROM pg_catalog.pg_class c
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relpersistence <> 't'),
  (SELECT string_agg(concat_ws(',', a.attrelid, a.attnum, a.attname, a.atttypid, a.attisdropped,
                               a.attcollation, a.attacl::text), ';' ORDER BY a.attrelid, a.attnum)
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    WHERE a.attnum > 0 AND c.oid >= 16384 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND c.relpersistence <> 't'),
  (SELECT string_agg(concat_ws(',', p.oid, p.polrelid, p.polcmd, p.polpermissive, p.polroles::text,
                               pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                               pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)), ';' ORDER BY p.oid)
     FROM pg_catalog.pg_policy p),
  (SELECT string_agg(concat_ws(',', m.roleid, m.member), ';' ORDER BY m.roleid, m.member)
     FROM pg_catalog.pg_auth_members m),
  (SELECT string_agg(concat_ws(',', r.oid, r.rolsuper, r.rolbypassrls, r.rolinherit), ';' ORDER BY r.oid)
     FROM pg_catalog.pg_roles r),
  (SELECT string_agg(concat_ws(',', f.oid, f.proname, f.provolatile), ';' ORDER BY f.oid)
     FROM pg_catalog.pg_proc f WHERE f.oid >= 16384),
  (SELECT string_agg(concat_ws(',', w.oid, w.ev_class, md5(w.ev_action::text)), ';' ORDER BY w.oid)
     FROM pg_catalog.pg_rewrite w WHERE w.ev_class >= 16384),
  (SELECT string_agg(concat_ws(',', n.oid, n.nspname, n.nspacl::text), ';' ORDER BY n.oid)
     FROM pg_catalog.pg_namespace n),
  (SELECT datacl::text FROM pg_catalog.pg_database WHERE datname = current_database()),
  (SELECT string_agg(concat_ws(',', i.indexrelid, i.indrelid, i.indisprimary, i.indisreplident,
                               i.indkey::text), ';' ORDER BY i.indexrelid)
     FROM pg_catalog.pg_index i WHERE (i.indisprimary OR i.indisreplident) AND i.indrelid >= 16384),
  (SELECT string_agg(concat_ws(',', t.oid, t.tgrelid, t.tgenabled), ';' ORDER BY t.oid)
     FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal),
  (SELECT string_agg(concat_ws(',', k.oid, k.conrelid, k.contype, k.confrelid, k.confdeltype,
                               k.confupdtype, md5(COALESCE(k.conbin::text, ''))), ';' ORDER BY k.oid)
     FROM pg_catalog.pg_constraint k WHERE k.conrelid >= 16384),
  (SELECT string_agg(concat_ws(',', d.oid, d.adrelid, md5(d.adbin::text)), ';' ORDER BY d.oid)
     FROM pg_catalog.pg_attrdef d),
  (SELECT string_agg(concat_ws(',', h.inhrelid, h.inhparent), ';' ORDER BY h.inhrelid, h.inhparent)
     FROM pg_catalog.pg_inherits h),
  (SELECT concat_ws(',', p.oid, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot)
     FROM pg_catalog.pg_publication p WHERE p.pubname = $1::text),
  (SELECT string_agg(pt::text, ';' ORDER BY pt.schemaname, pt.tablename)
     FROM pg_catalog.pg_publication_tables pt WHERE pt.pubname = $1::text),
  (SELECT string_agg(concat_ws(',', s.setdatabase, s.setrole, s.setconfig::text), ';'
                     ORDER BY s.setdatabase, s.setrole)
     FROM pg_catalog.pg_db_role_setting s)
)),
  (SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'default_transaction_isolation'),
  (SELECT source FROM pg_catalog.pg_settings WHERE name = 'default_transaction_isolation')";

/// A role's and database's settings that apply to a session of role `$1` in this database,
/// ranked as PostgreSQL applies them (0 wins): the role in this database, the role, the
/// database, every role.
pub const ROLE_SETTINGS: &str = "SELECT CASE WHEN s.setrole <> 0 AND s.setdatabase <> 0 THEN 0
            WHEN s.setrole <> 0 THEN 1
            WHEN s.setdatabase <> 0 THEN 2
            ELSE 3 END,
       s.setconfig
  FROM pg_catalog.pg_db_role_setting s
 WHERE s.setrole IN (0, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1))
   AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                              WHERE d.datname = current_database()))";

/// The default isolation of pgcached's own session, and where it came from.
pub const SERVER_ISOLATION: &str = "SELECT reset_val, source FROM pg_catalog.pg_settings WHERE name = 'default_transaction_isolation'";

/// Every relation whose changes a decoder reports, by the name test_decoding prints
/// (`quote_qualified_identifier`): permanent tables, partitioned tables and materialized views.
pub const RELATION_NAMES: &str = "\
SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), c.oid
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence = 'p'";

/// Which of the relations `$2` (oids) have changes the publication `$1` does not carry: all of
/// them when the publication is missing or does not publish every action (insert, update,
/// delete, truncate); otherwise those that are neither listed in `pg_publication_tables`
/// without a row filter nor a partition of a listed table (`publish_via_partition_root` lists
/// the root). A partitioned table has no rows of its own. `to_jsonb(pt) ->> 'rowfilter'` is NULL
/// before PostgreSQL 15, which has no row filters.
pub const UNPUBLISHED: &str = "\
SELECT t.oid
  FROM unnest($2::oid[]) AS t(oid)
  JOIN pg_catalog.pg_class c ON c.oid = t.oid
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication p
                    WHERE p.pubname = $1::text
                      AND p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate)
    OR (c.relkind <> 'p' AND NOT EXISTS (
          SELECT 1
            FROM pg_catalog.pg_publication_tables pt
            JOIN pg_catalog.pg_namespace pn ON pn.nspname = pt.schemaname
            JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.oid AND pc.relname = pt.tablename
           WHERE pt.pubname = $1::text AND to_jsonb(pt) ->> 'rowfilter' IS NULL
             AND (pc.oid = t.oid
                  OR pc.oid IN (SELECT a.relid::oid
                                FROM pg_catalog.pg_partition_ancestors(t.oid::regclass) a))))";

/// The partitioned tables a partition belongs to, up to the root: `$1` the partition's oid. A
/// publication with `publish_via_partition_root` may report a change under any of them.
pub const ANCESTORS: &str = "\
SELECT a.relid::oid AS oid
  FROM pg_catalog.pg_partition_ancestors($1::oid::regclass) a
 WHERE a.relid::oid <> $1::oid";

/// Schema and name of relations: `$1` an array of oids.
pub const TABLE_NAMES: &str = "\
SELECT c.oid, n.nspname::text, c.relname::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY($1::oid[])";

/// Tables, partitioned tables and materialized views called `$1`, in schema `$2` or any schema
/// when NULL (for `INVALIDATE TABLE`).
pub const FIND_TABLES: &str = "\
SELECT c.oid
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = $1 AND ($2::text IS NULL OR n.nspname = $2)
   AND c.relkind IN ('r', 'p', 'm')";

/// What decides whether a table's rows can be pinned: `$1` the table's oid. Its kind, whether it
/// is a partition or has descendants (inheritance or partitions), and its replica identity.
pub const TABLE_SHAPE: &str = "\
SELECT c.relkind, c.relispartition, c.relreplident,
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid) AS has_children
  FROM pg_catalog.pg_class c
 WHERE c.oid = $1";

/// A table's columns in order, with their type and whether their collation is deterministic:
/// `$1` the table's oid.
pub const TABLE_COLUMNS: &str = "\
SELECT a.attname::text, a.atttypid, COALESCE(k.collisdeterministic, true) AS deterministic
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_collation k ON k.oid = a.attcollation
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum";

/// The columns of a table's primary key and of its replica identity index: `$1` the table's
/// oid.
pub const IDENTITY_COLUMNS: &str = "\
SELECT a.attname::text, i.indisprimary, i.indisreplident
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident)";

/// How many things can make a write to a table change more than its own rows, or run code
/// pgcached cannot see: user triggers, rules other than SELECT, and defaults, generated columns
/// or constraints that call functions outside `pg_catalog`. `$1` the table's oid.
pub const WRITE_SIDE_EFFECTS: &str = "\
SELECT (SELECT count(*) FROM pg_catalog.pg_trigger t WHERE t.tgrelid = $1 AND NOT t.tgisinternal)
     + (SELECT count(*) FROM pg_catalog.pg_rewrite r WHERE r.ev_class = $1 AND r.ev_type <> '1')
     + (SELECT count(*)
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
         WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass
           AND p.pronamespace <> 'pg_catalog'::regnamespace
           AND ((d.classid = 'pg_catalog.pg_attrdef'::regclass
                 AND d.objid IN (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid = $1))
             OR (d.classid = 'pg_catalog.pg_constraint'::regclass
                 AND d.objid IN (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid = $1))))";

/// The tables whose rows a write to `$1` changes through foreign keys (ON DELETE or ON UPDATE
/// CASCADE, SET NULL, SET DEFAULT).
pub const CASCADES: &str = "\
SELECT DISTINCT c.conrelid
  FROM pg_catalog.pg_constraint c
 WHERE c.contype = 'f' AND c.confrelid = $1
   AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd'))";

/// Whether a function of this name (`$1`), in schema `$2` or any schema when NULL, exists
/// outside `pg_catalog`: such a function may write anything.
pub const USER_FUNCTION: &str = "\
SELECT EXISTS (
  SELECT 1
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
   WHERE p.proname = $1 AND ($2::text IS NULL OR n.nspname = $2) AND n.nspname <> 'pg_catalog')";
