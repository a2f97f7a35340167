//! `docs/METRICS.md` stays true: every metric in pgcached's registry is documented there with
//! its type and label names, and every metric documented there is in the registry.

use std::collections::BTreeMap;

use pgcached::metrics::registry::{self, Metric};
use pgcached_tests::dashboard::repo;

/// One row of a metrics table of docs/METRICS.md.
#[derive(Debug)]
struct Documented {
    /// The type column (`counter`, `gauge`, `histogram, buckets ...`).
    kind: String,
    /// The labels column.
    labels: String,
}

/// The rows of the tables of docs/METRICS.md, by metric name.
fn documented() -> BTreeMap<String, Documented> {
    let text = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("docs/METRICS.md");
    text.lines()
        .filter(|line| line.starts_with("| `pgcached_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", name, type, labels, meaning, ""
            assert!(cells.len() >= 5, "not a metrics row: {line}");
            let name = cells[1].trim_matches('`').to_owned();
            let row = Documented {
                kind: cells[2].to_owned(),
                labels: cells[3].to_owned(),
            };
            (name, row)
        })
        .collect()
}

/// Whether the labels column names exactly `metric`'s labels: `` `a`, `b` `` first (then, after
/// a space, their values or an explanation), or nothing when there are none.
fn labels_match(metric: &Metric, column: &str) -> bool {
    if metric.labels.is_empty() {
        return column.is_empty();
    }
    let names = metric
        .labels
        .iter()
        .map(|label| format!("`{label}`"))
        .collect::<Vec<_>>()
        .join(", ");
    column == names || column.starts_with(&format!("{names} "))
}

#[test]
fn every_metric_is_documented_with_its_type_and_labels() {
    let documented = documented();
    assert!(registry::ALL.len() >= 20, "{}", registry::ALL.len());
    for metric in registry::ALL {
        let row = documented
            .get(metric.name)
            .unwrap_or_else(|| panic!("{} is not in docs/METRICS.md", metric.name));
        let kind = row.kind.split([',', ' ']).next().unwrap_or_default();
        assert_eq!(
            kind,
            metric.kind.name(),
            "{}: docs/METRICS.md says {:?}",
            metric.name,
            row.kind
        );
        assert!(
            labels_match(metric, &row.labels),
            "{}: labels are {:?}, docs/METRICS.md says {:?}",
            metric.name,
            metric.labels,
            row.labels
        );
    }
    for name in documented.keys() {
        assert!(
            registry::find(name).is_some(),
            "docs/METRICS.md documents {name}, which is not in pgcached's metric registry"
        );
    }
}

#[test]
fn every_replication_problem_label_is_documented() {
    let documented = documented();
    let row = documented
        .get(registry::REPLICATION_PROBLEM.name)
        .expect("pgcached_replication_problem documented");
    for label in pgcached_invalidation::Problem::LABELS {
        assert!(
            row.labels.contains(label),
            "problem label {label} not in docs/METRICS.md"
        );
    }
}

#[test]
fn every_session_error_kind_is_documented() {
    let documented = documented();
    let row = documented
        .get(registry::SESSION_ERRORS_TOTAL.name)
        .expect("pgcached_session_errors_total documented");
    for kind in pgcached::error::ErrorKind::ALL {
        assert!(
            row.labels.contains(kind.label()),
            "session error kind {} not in docs/METRICS.md",
            kind.label()
        );
    }
}

#[test]
fn every_shared_cache_label_is_documented() {
    use pgcached::shared_cache::client::FailureKind;
    use pgcached::shared_cache::validate::Refusal;
    use pgcached::shared_cache::WriteOutcome;
    let documented = documented();
    let row = |metric: &registry::Metric| {
        documented
            .get(metric.name)
            .unwrap_or_else(|| panic!("{} documented", metric.name))
            .labels
            .clone()
    };
    let refused = row(&registry::SHARED_CACHE_REFUSED_TOTAL);
    for reason in Refusal::ALL {
        assert!(
            refused.contains(reason.label()),
            "reason {} not documented",
            reason.label()
        );
    }
    let errors = row(&registry::SHARED_CACHE_ERRORS_TOTAL);
    for kind in FailureKind::ALL {
        assert!(
            errors.contains(kind.label()),
            "kind {} not documented",
            kind.label()
        );
    }
    let writes = row(&registry::SHARED_CACHE_WRITES_TOTAL);
    for outcome in WriteOutcome::ALL {
        assert!(
            writes.contains(outcome.label()),
            "outcome {} not documented",
            outcome.label()
        );
    }
}
