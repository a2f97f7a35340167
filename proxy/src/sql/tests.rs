use super::write::WriteInfo;
use super::*;

fn rel(schema: Option<&str>, name: &str) -> RelationName {
    RelationName {
        schema: schema.map(str::to_owned),
        name: name.to_owned(),
    }
}

fn read(sql: &str) -> ReadDeps {
    match analyze(sql).kind {
        StatementKind::Read(deps) => deps,
        other => panic!("{sql}: expected a read, got {other:?}"),
    }
}

fn function_names(deps: &ReadDeps) -> Vec<String> {
    deps.functions.iter().map(|f| f.name.clone()).collect()
}

#[test]
fn reads_report_relations_and_functions() {
    let deps = read("SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    assert_eq!(deps.relations, vec![rel(None, "pgbench_accounts")]);
    assert!(deps.functions.is_empty());

    let deps = read("select lower(name) from Public.\"Items\" i join orders o on o.id = i.id");
    assert_eq!(
        deps.relations,
        vec![rel(Some("public"), "Items"), rel(None, "orders")]
    );
    assert_eq!(function_names(&deps), vec!["lower"]);

    let deps = read("WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM recent");
    assert_eq!(deps.relations, vec![rel(None, "orders")]);
    assert_eq!(function_names(&deps), vec!["count"]);

    let deps = read("SELECT * FROM generate_series(1, 3) g, t WHERE g = t.id");
    assert_eq!(deps.relations, vec![rel(None, "t")]);
    assert_eq!(function_names(&deps), vec!["generate_series"]);

    let deps = read("SELECT a FROM x UNION SELECT b FROM (SELECT b FROM y) s");
    assert_eq!(deps.relations, vec![rel(None, "x"), rel(None, "y")]);

    let deps = read("SELECT CURRENT_TIMESTAMP");
    assert_eq!(function_names(&deps), vec!["current_timestamp"]);

    let deps = read("SELECT nextval('s')");
    assert_eq!(function_names(&deps), vec!["nextval"]);

    let deps = read("VALUES (1), (2)");
    assert!(deps.relations.is_empty());

    let deps = read("  /* hello */ SELECT 1 -- trailing\n ; ");
    assert!(deps.relations.is_empty());

    let deps = read("SELECT * FROM db.sch.tab");
    assert_eq!(deps.relations, vec![rel(Some("sch"), "tab")]);

    let deps = read("SELECT (SELECT max(v) FROM w WHERE w.k = t.k) FROM t");
    assert_eq!(deps.relations.len(), 2);
}

#[test]
fn uncacheable_reads_say_why() {
    for (sql, reason) in [
        ("SELECT * FROM t FOR UPDATE", "locking_clause"),
        (
            "SELECT * FROM (SELECT * FROM t FOR SHARE) s",
            "locking_clause",
        ),
        ("SELECT * INTO new_table FROM t", "select_into"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "data_modifying_cte",
        ),
        ("SELECT 'now'::timestamptz", "time_literal"),
        ("SELECT ' Today '::date", "time_literal"),
        ("SELECT 1; SELECT 2", "multi_statement"),
        ("", "empty"),
        ("-- only a comment", "empty"),
    ] {
        let StatementKind::UncacheableRead(found) = analyze(sql).kind else {
            panic!("{sql} is not an uncacheable read");
        };
        assert_eq!(found.label(), reason, "{sql}");
    }
}

#[test]
fn other_statements_are_sorted() {
    for (sql, expected) in [
        (
            "SET search_path = s1",
            StatementKind::SessionState(IsolationSetting::Untouched),
        ),
        (
            "set role alice",
            StatementKind::SessionState(IsolationSetting::Untouched),
        ),
        (
            "RESET ALL",
            StatementKind::SessionState(IsolationSetting::Default(None)),
        ),
        (
            "DISCARD ALL",
            StatementKind::SessionState(IsolationSetting::Default(None)),
        ),
        (
            "SET SESSION AUTHORIZATION bob",
            StatementKind::SessionState(IsolationSetting::Untouched),
        ),
        (
            "BEGIN",
            StatementKind::TransactionControl(TransactionStep::Begin(None)),
        ),
        (
            "COMMIT",
            StatementKind::TransactionControl(TransactionStep::End { chain: false }),
        ),
        (
            "ROLLBACK",
            StatementKind::TransactionControl(TransactionStep::End { chain: false }),
        ),
        (
            "SAVEPOINT a",
            StatementKind::TransactionControl(TransactionStep::Savepoint),
        ),
        (
            "CREATE TEMP TABLE x (a int)",
            StatementKind::CreatesTempObjects,
        ),
        (
            "CREATE TABLE pg_temp.x (a int)",
            StatementKind::CreatesTempObjects,
        ),
        ("TRUNCATE t", StatementKind::Write(WriteInfo::default())),
        (
            "CREATE TABLE x (a int)",
            StatementKind::Write(WriteInfo::default()),
        ),
        ("DROP TABLE x", StatementKind::Write(WriteInfo::default())),
        (
            "GRANT SELECT ON t TO PUBLIC",
            StatementKind::Write(WriteInfo::default()),
        ),
        (
            "COPY t FROM STDIN",
            StatementKind::Write(WriteInfo::default()),
        ),
        ("CALL p()", StatementKind::Other),
        ("SELEC 1", StatementKind::Unparsable),
    ] {
        assert_eq!(analyze(sql).kind, expected, "{sql}");
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
    ] {
        match analyze(sql).kind {
            StatementKind::Write(info) => assert!(info.shape.is_some(), "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn odd_input_never_panics() {
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let inputs: Vec<String> = vec![
        "SELECT 'unterminated".into(),
        "SELECT $$ body".into(),
        "\0\0\0".into(),
        "SELECT * FROM \"".into(),
        ";;;;".into(),
        deep,
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for sql in &inputs {
                let _ = analyze(sql);
            }
        })
        .expect("thread");
    assert!(handle.join().is_ok());
}
