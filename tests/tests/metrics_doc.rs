//! `docs/METRICS.md` stays true: every metric name pgcached defines is documented there, and
//! every name documented there is one pgcached defines.

use std::collections::BTreeSet;

use pgcached_tests::dashboard::repo;

/// Metric names defined as string constants in pgcached's source.
fn defined() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![repo().join("proxy/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                // The throwaway cluster's role names and passwords are not metrics.
                if !path.ends_with("local_cluster") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            // `pub const NAME: &str = "pgcached_...";`, possibly wrapped over lines.
            for definition in text.split("pub const ").skip(1) {
                let definition = definition.split(';').next().unwrap_or_default();
                if !definition.contains(": &str") {
                    continue;
                }
                if let Some(name) = definition.split('"').nth(1) {
                    if name.starts_with("pgcached_") {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Metric names in the first column of the tables of docs/METRICS.md.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("docs/METRICS.md");
    text.lines()
        .filter_map(|line| line.strip_prefix("| `pgcached_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("pgcached_{name}"))
        .collect()
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let defined = defined();
    let documented = documented();
    assert!(defined.len() >= 20, "{defined:?}");
    let undocumented: Vec<&String> = defined.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&defined).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/METRICS.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "documented but not defined: {unknown:?}"
    );
}

#[test]
fn every_replication_problem_label_is_documented() {
    let text = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("docs/METRICS.md");
    let line = text
        .lines()
        .find(|line| line.starts_with("| `pgcached_replication_problem`"))
        .expect("pgcached_replication_problem documented");
    for label in pgcached_invalidation::Problem::LABELS {
        assert!(
            line.contains(label),
            "problem label {label} not in docs/METRICS.md"
        );
    }
}
