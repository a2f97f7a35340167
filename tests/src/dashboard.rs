//! The Grafana dashboard's queries, read from `grafana/dashboards/pgcached.json`, for the tests
//! that check them against pgcached's metric registry and against a real Prometheus.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pgcached::metrics::registry::{self, Metric, MetricType};

/// One query of one panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The PromQL expression, as stored (Grafana variables included).
    pub expr: String,
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// Every query of every panel of the dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let path = repo().join("grafana/dashboards/pgcached.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(PanelQuery {
                panel: title.clone(),
                expr: target["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    queries
}

/// The `pgcached_*` metric names an expression uses.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("pgcached_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The registry entry of a series name as PromQL sees it: a metric's own name, or for a
/// histogram its `_bucket`, `_sum` or `_count` series.
pub fn registered(series: &str) -> Option<&'static Metric> {
    registry::find(series).or_else(|| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| series.strip_suffix(suffix))
            .filter_map(registry::find)
            .find(|metric| matches!(metric.kind, MetricType::Histogram(_)))
    })
}

/// The expression with Grafana's variables replaced (the interval ones by `rate_interval`, the
/// dashboard's `$instance` selector by "every instance"), ready for Prometheus's API.
pub fn concrete(expr: &str, rate_interval: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("$__range", rate_interval)
        .replace("$instance", ".*")
}
