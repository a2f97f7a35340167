//! `compose.yaml`, the `Dockerfile` and the Prometheus/Grafana files, checked without Docker:
//! every path they use exists, every pgcached setting they pass is one pgcached has, the ports
//! line up, and every metric the dashboard plots or an alert uses is in pgcached's metric
//! registry.

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};
use pgcached::config::Cli;
use pgcached_tests::dashboard::{metric_names, panel_queries, registered, repo};
use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    serde_yaml::from_str(&read("compose.yaml")).expect("compose.yaml is YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_mapping(), "compose.yaml has no service {name}");
    service
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(name, value)` pairs of a service's environment (map or list form).
fn environment(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                (k.as_str().unwrap_or_default().to_owned(), value)
            })
            .collect(),
        Value::Sequence(_) => strings(&service["environment"])
            .into_iter()
            .filter_map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The host side of every published port of every service.
fn published_ports(compose: &Value) -> BTreeSet<String> {
    let mut ports = BTreeSet::new();
    for (_, service) in compose["services"].as_mapping().expect("services") {
        for port in strings(&service["ports"]) {
            let host = port
                .rsplit_once(':')
                .map_or(port.as_str(), |(host, _)| host);
            let host = host.rsplit(':').next().unwrap_or(host);
            ports.insert(host.to_owned());
        }
    }
    ports
}

/// Every bind-mount source of every service, relative to the repository.
fn mounted_paths(compose: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    for (_, service) in compose["services"].as_mapping().expect("services") {
        for volume in strings(&service["volumes"]) {
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with("./") {
                paths.push(source.trim_start_matches("./").to_owned());
            }
        }
    }
    paths
}

#[test]
fn every_path_compose_uses_exists() {
    let compose = compose();
    let mounted = mounted_paths(&compose);
    for needed in [
        "docker/postgres-init.sql",
        "prometheus",
        "grafana/provisioning",
        "grafana/dashboards",
    ] {
        assert!(
            mounted.iter().any(|m| m == needed),
            "{needed} is not mounted: {mounted:?}"
        );
    }
    for path in &mounted {
        assert!(
            repo().join(path).exists(),
            "compose.yaml mounts missing {path}"
        );
    }
    let build = &service(&compose, "pgcached")["build"];
    let context = build["context"].as_str().unwrap_or(".");
    let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(repo().join(context).join(dockerfile).is_file());
    for provisioning in [
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/pgcached.yml",
        "grafana/dashboards/pgcached.json",
    ] {
        assert!(
            repo().join(provisioning).is_file(),
            "{provisioning} missing"
        );
    }
}

#[test]
fn compose_yaml_follows_the_compose_specification_schema() {
    let script = repo().join("tests/clients/compose_schema_check.js");
    let mut command = std::process::Command::new("node");
    command
        .arg(&script)
        .arg(repo().join("compose.yaml"))
        .current_dir(repo().join("tests/clients"));
    let output = pgcached_tests::clients::run_with_timeout(&mut command, 60);
    let stdout = pgcached_tests::clients::expect_success(
        &output,
        "node compose_schema_check.js (run scripts/test to install its packages)",
    );
    assert_eq!(stdout.trim(), "valid");
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_pgcached_in_another() {
    let dockerfile = read("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .count();
    assert!(stages >= 2, "not a multi-stage build");
    assert!(dockerfile.contains("cargo build --release --locked -p pgcached"));
    assert!(dockerfile.contains("COPY --from=build"));
    assert!(dockerfile.contains("ENTRYPOINT [\"pgcached\"]"));
    assert!(
        dockerfile.lines().any(|l| l.starts_with("USER ")),
        "runs as root"
    );
    // The copied workspace must hold everything the build needs.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "proxy",
        "cache",
        "invalidation",
        "tests",
    ] {
        assert!(repo().join(needed).exists(), "{needed}");
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn pgcached_settings_in_compose_are_real_flags_and_parse() {
    let compose = compose();
    let pgcached = service(&compose, "pgcached");
    let command = Cli::command();
    let known_env: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let env = environment(pgcached);
    assert!(!env.is_empty(), "pgcached has no environment");
    for (name, _) in &env {
        if name.starts_with("PGCACHED_") {
            assert!(
                known_env.contains(name),
                "{name} is not a pgcached setting: {known_env:?}"
            );
        }
    }
    // The settings parse and resolve exactly as pgcached would at start.
    let mut args = vec!["pgcached".to_owned()];
    for (name, value) in &env {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e.to_string_lossy() == *name))
        else {
            continue;
        };
        args.push(format!("--{}", arg.get_long().expect("long flag")));
        args.push(value.clone());
    }
    args.extend(strings(&pgcached["command"]));
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let config = pgcached::Config::resolve(&cli, &pgcached::config::FileConfig::default())
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(config.listen.port(), 6432);
    assert!(
        config.listen.ip().is_unspecified(),
        "a container must listen on 0.0.0.0"
    );
    assert!(config.metrics_listen.ip().is_unspecified());
    assert_eq!(
        config.upstream.first().name,
        "postgres",
        "upstream is the postgres service"
    );
    assert!(
        config.upstream.user.is_some(),
        "caching needs pgcached's own credentials"
    );
    assert_eq!(
        config.cache.publication, None,
        "the stack follows every table with test_decoding"
    );

    // The metrics port is the one Prometheus scrapes.
    let prometheus: Value =
        serde_yaml::from_str(&read("prometheus/prometheus.yml")).expect("prometheus.yml");
    let targets = strings(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(
        targets,
        vec![format!("pgcached:{}", config.metrics_listen.port())]
    );
    assert_eq!(
        prometheus["scrape_configs"][0]["job_name"].as_str(),
        Some("pgcached")
    );

    // The Dockerfile's defaults match what compose sets.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {} {}", 6432, config.metrics_listen.port())));
}

#[test]
fn only_pgcached_grafana_and_prometheus_are_published() {
    let compose = compose();
    let ports = published_ports(&compose);
    let expected: BTreeSet<String> = ["6432", "3000", "9090"].map(str::to_owned).into();
    assert_eq!(ports, expected);
    assert!(strings(&service(&compose, "postgres")["ports"]).is_empty());
    assert_eq!(
        strings(&service(&compose, "pgcached")["ports"]),
        vec!["6432:6432"]
    );
    // Every service is on the stack's network.
    for (name, service) in compose["services"].as_mapping().expect("services") {
        assert_eq!(
            strings(&service["networks"]),
            vec!["backend"],
            "{name:?} is not on the backend network"
        );
    }
}

#[test]
fn postgres_is_ready_for_logical_replication_and_pgcached_role() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    let command = strings(&postgres["command"]).join(" ");
    assert!(command.contains("wal_level=logical"), "{command}");
    let init = read("docker/postgres-init.sql");
    let upstream = environment(service(&compose, "pgcached"))
        .into_iter()
        .find(|(k, _)| k == "PGCACHED_UPSTREAM")
        .map(|(_, v)| v)
        .expect("PGCACHED_UPSTREAM");
    let url = pgcached::upstream::url::UpstreamUrl::parse(&upstream).expect("upstream URL");
    let user = url.user.expect("user");
    let password = url.password.expect("password");
    assert!(
        init.contains(&format!(
            "CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{password}'"
        )),
        "the init script does not create {user} with REPLICATION and the URL's password"
    );
    // pgcached needs no publication: one FOR ALL TABLES would make UPDATE and DELETE fail on
    // every table without a primary key or replica identity.
    assert!(
        !init.to_ascii_uppercase().contains("CREATE PUBLICATION"),
        "the init script creates a publication"
    );
    let database = url.database.expect("database");
    assert!(init.contains(&format!("CREATE DATABASE {database}")));
    // The auth query's function, in pgcached's database (after `\connect app`).
    let in_app = init
        .split_once(&format!("\\connect {database}"))
        .map(|(_, rest)| rest)
        .expect("the script connects to pgcached's database");
    assert!(
        in_app.contains(&pgcached::auth::verifiers::install_sql(&user)),
        "the init script does not install the verifier function as README shows it"
    );
    assert!(
        postgres["healthcheck"].is_mapping(),
        "pgcached waits for a healthy postgres"
    );
    assert_eq!(
        service(&compose, "pgcached")["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn the_alert_rules_load_and_use_real_metrics() {
    let prometheus: Value =
        serde_yaml::from_str(&read("prometheus/prometheus.yml")).expect("prometheus.yml");
    let rule_files = strings(&prometheus["rule_files"]);
    assert_eq!(rule_files, vec!["alerts.yml"]);
    let rules: Value = serde_yaml::from_str(&read("prometheus/alerts.yml")).expect("alerts.yml");
    let mut count = 0;
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            count += 1;
            let name = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            assert!(
                rule["annotations"]["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name} does not say what to do"
            );
            for metric in metric_names(expr) {
                assert!(
                    registered(&metric).is_some(),
                    "alert {name} uses {metric}, which is not in pgcached's metric registry"
                );
            }
        }
    }
    assert!(count >= 5, "{count} rules");
}

#[test]
fn every_dashboard_metric_is_exported_by_pgcached() {
    let names: BTreeSet<String> = panel_queries()
        .iter()
        .flat_map(|q| metric_names(&q.expr))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        assert!(
            registered(&name).is_some(),
            "the dashboard plots {name}, which is not in pgcached's metric registry"
        );
    }
    let datasource: Value =
        serde_yaml::from_str(&read("grafana/provisioning/datasources/prometheus.yml"))
            .expect("datasource YAML");
    assert_eq!(
        datasource["datasources"][0]["uid"].as_str(),
        Some("prometheus")
    );
    let dashboard = read("grafana/dashboards/pgcached.json");
    assert!(
        !dashboard.contains("${DS_"),
        "the dashboard needs an import-time input"
    );
    // Every metric selector follows the instance variable, so one dashboard serves a fleet.
    for query in panel_queries() {
        for metric in metric_names(&query.expr) {
            let scoped = query
                .expr
                .match_indices(metric.as_str())
                .filter(|(at, _)| {
                    // Skip longer names that start with this one.
                    let next = query.expr[at + metric.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .all(|(at, _)| {
                    query.expr[at + metric.len()..].starts_with("{instance=~\"$instance\"")
                });
            assert!(scoped, "{}: {metric} ignores $instance", query.panel);
        }
    }
}
