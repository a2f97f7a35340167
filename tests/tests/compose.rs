//! `compose.yaml`, `compose.scale.yaml`, the `Dockerfile` and the Prometheus/Grafana files,
//! checked without Docker: every path they use exists, every pgcached setting they pass is one
//! pgcached has, the ports line up, and every metric the dashboard plots or an alert uses is in
//! pgcached's metric registry.

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};
use pgcached::config::Cli;
use pgcached_tests::dashboard::{metric_names, panel_queries, registered, repo};
use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    compose_file("compose.yaml")
}

fn compose_file(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(
        service.is_mapping(),
        "the compose file has no service {name}"
    );
    service
}

/// The value of `name` in a service's environment.
fn env_value(service: &Value, name: &str) -> Option<String> {
    environment(service)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
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
    schema_check("compose.yaml");
}

#[test]
fn compose_scale_yaml_follows_the_compose_specification_schema() {
    schema_check("compose.scale.yaml");
}

fn schema_check(file: &str) {
    let script = repo().join("tests/clients/compose_schema_check.js");
    let mut command = std::process::Command::new("node");
    command
        .arg(&script)
        .arg(repo().join(file))
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

/// The configuration a pgcached service starts with: every `PGCACHED_*` variable is a real
/// setting, and all of them resolve exactly as pgcached would at start.
fn resolve(pgcached: &Value) -> pgcached::Config {
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
    pgcached::Config::resolve(&cli, &pgcached::config::FileConfig::default())
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn pgcached_settings_in_compose_are_real_flags_and_parse() {
    let compose = compose();
    let pgcached = service(&compose, "pgcached");
    let config = resolve(pgcached);
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

/// The pgcached services of the scale stack.
const SCALE_PGCACHEDS: [&str; 2] = ["pgcached-a", "pgcached-b"];

#[test]
fn every_path_the_scale_stack_uses_exists() {
    let compose = compose_file("compose.scale.yaml");
    let mounted = mounted_paths(&compose);
    for needed in [
        "docker/postgres-init.sql",
        "docker/postgres-replication.sh",
        "docker/replica-entrypoint.sh",
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
            "compose.scale.yaml mounts missing {path}"
        );
    }
    for name in SCALE_PGCACHEDS {
        let build = &service(&compose, name)["build"];
        let context = build["context"].as_str().unwrap_or(".");
        let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
        assert!(repo().join(context).join(dockerfile).is_file(), "{name}");
    }
    let prometheus = strings(&service(&compose, "prometheus")["command"]).join(" ");
    assert!(
        prometheus.contains("--config.file=/etc/prometheus/prometheus.scale.yml"),
        "{prometheus}"
    );
    assert!(repo().join("prometheus/prometheus.scale.yml").is_file());
}

#[test]
fn both_pgcacheds_share_valkey_and_follow_the_primary_and_its_replica() {
    let compose = compose_file("compose.scale.yaml");
    assert!(service(&compose, "valkey").is_mapping());
    let mut targets = Vec::new();
    for name in SCALE_PGCACHEDS {
        let pgcached = service(&compose, name);
        let config = resolve(pgcached);
        assert_eq!(config.listen.port(), 6432, "{name}");
        assert!(config.listen.ip().is_unspecified(), "{name}");
        assert!(config.metrics_listen.ip().is_unspecified(), "{name}");
        let hosts: Vec<String> = config
            .upstream
            .hosts
            .iter()
            .map(|host| host.address())
            .collect();
        assert_eq!(
            hosts,
            ["postgres:5432", "postgres-replica:5432"],
            "{name}: both servers, the primary first"
        );
        assert_eq!(
            config.upstream.target_session_attrs,
            pgcached::upstream::TargetSessionAttrs::Primary,
            "{name} must follow the primary through a failover"
        );
        assert!(config.upstream.user.is_some(), "{name}: own credentials");
        let shared = env_value(pgcached, "PGCACHED_SHARED_CACHE").expect("shared cache");
        assert_eq!(shared, "redis://valkey:6379", "{name}");
        assert!(config.shared_cache.is_some(), "{name}");
        let replicas: Vec<String> = config.replicas.urls.iter().map(|u| u.address()).collect();
        assert_eq!(
            replicas,
            ["postgres-replica:5432"],
            "{name}: misses may go to the streaming replica while it is one"
        );
        assert!(
            config.replicas.urls[0].user.is_some(),
            "{name}: the replica is checked with pgcached's own credentials"
        );
        for needed in ["postgres", "valkey"] {
            assert_eq!(
                pgcached["depends_on"][needed]["condition"].as_str(),
                Some("service_healthy"),
                "{name} waits for {needed}"
            );
        }
        targets.push(format!("{name}:{}", config.metrics_listen.port()));
    }
    // Prometheus scrapes both, so the dashboard's instance variable lists both.
    let prometheus: Value = serde_yaml::from_str(&read("prometheus/prometheus.scale.yml"))
        .expect("prometheus.scale.yml");
    assert_eq!(
        strings(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"]),
        targets
    );
    assert_eq!(
        prometheus["scrape_configs"][0]["job_name"].as_str(),
        Some("pgcached")
    );
    assert_eq!(strings(&prometheus["rule_files"]), vec!["alerts.yml"]);
    let ports = published_ports(&compose);
    let expected: BTreeSet<String> = ["6432", "6433", "3000", "9090"].map(str::to_owned).into();
    assert_eq!(ports, expected);
    for private in ["postgres", "postgres-replica", "valkey"] {
        assert!(
            strings(&service(&compose, private)["ports"]).is_empty(),
            "{private} is published"
        );
    }
    for (name, service) in compose["services"].as_mapping().expect("services") {
        assert_eq!(
            strings(&service["networks"]),
            vec!["backend"],
            "{name:?} is not on the backend network"
        );
    }
}

#[test]
fn the_replica_streams_from_the_primary_of_the_scale_stack() {
    let compose = compose_file("compose.scale.yaml");
    let primary = service(&compose, "postgres");
    let command = strings(&primary["command"]).join(" ");
    assert!(command.contains("wal_level=logical"), "{command}");
    let replica = service(&compose, "postgres-replica");
    assert_eq!(
        env_value(replica, "PRIMARY_HOST").as_deref(),
        Some("postgres")
    );
    let entrypoint = read("docker/replica-entrypoint.sh");
    assert!(entrypoint.contains("pg_basebackup -h \"$PRIMARY_HOST\" -U \"$REPLICATION_USER\""));
    assert!(
        entrypoint.contains(" -R "),
        "the copy must start as a standby"
    );
    assert!(entrypoint.contains("exec postgres"));
    // The role and the pg_hba.conf line the replica streams with, made on the primary.
    let user = env_value(replica, "REPLICATION_USER").expect("REPLICATION_USER");
    let password = env_value(replica, "PGPASSWORD").expect("PGPASSWORD");
    let setup = read("docker/postgres-replication.sh");
    assert!(setup.contains(&format!(
        "CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{password}'"
    )));
    assert!(setup.contains(&format!("host replication {user} all scram-sha-256")));
    assert!(
        strings(&primary["volumes"])
            .iter()
            .any(|v| v.starts_with("./docker/postgres-replication.sh:/docker-entrypoint-initdb.d/")),
        "the primary runs the replication setup at its first start"
    );
    assert_eq!(
        replica["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    // The same init script as the one-machine stack: pgcached's role, the app database.
    let init = read("docker/postgres-init.sql");
    let upstream =
        env_value(service(&compose, "pgcached-a"), "PGCACHED_UPSTREAM").expect("upstream");
    let url = pgcached::upstream::url::UpstreamUrl::parse(&upstream).expect("upstream URL");
    assert!(init.contains(&format!(
        "CREATE ROLE {} LOGIN REPLICATION PASSWORD '{}'",
        url.user.expect("user"),
        url.password.expect("password")
    )));
}

#[test]
fn the_dashboard_shows_the_shared_tier_and_each_instance() {
    let queries = panel_queries();
    let l2 = queries.iter().filter(|q| {
        q.expr.contains("pgcached_shared_cache_hits_total")
            && q.expr.contains("pgcached_shared_cache_misses_total")
            && q.expr.contains("clamp_min")
    });
    assert!(
        l2.clone().count() >= 2,
        "an L2 hit ratio panel, overall and per instance"
    );
    assert!(
        l2.clone().any(|q| q.expr.contains("by (instance)")),
        "the L2 hit ratio per instance"
    );
    let per_instance: BTreeSet<&str> = queries
        .iter()
        .filter(|q| q.expr.contains("by (instance") || q.expr.contains("by (instance,"))
        .map(|q| q.panel.as_str())
        .collect();
    assert!(
        per_instance.len() >= 5,
        "per-instance panels: {per_instance:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.expr.contains("pgcached_upstream_current")),
        "a panel shows the upstream host each instance uses"
    );
}
