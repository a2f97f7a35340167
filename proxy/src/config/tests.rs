//! Settings resolved from flags, environment and the config file, and the errors of bad ones.

use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["pgcached"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect("valid flags")
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let config = Config::resolve(&cli(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
    assert_eq!(config.upstream.first().port, 5432);
    assert_eq!(config.max_client_conn, 1000);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.cache.mode, CacheMode::On);
    assert_eq!(config.cache.size, 256 * 1024 * 1024);
    assert_eq!(config.cache.max_entry, 1024 * 1024);
    assert_eq!(config.cache.ttl, None);
    assert_eq!(
        config.auth_query.as_deref(),
        Some(crate::auth::DEFAULT_AUTH_QUERY)
    );
    let off =
        Config::resolve(&cli(&["--auth-query", "none"]), &FileConfig::default()).expect("valid");
    assert_eq!(off.auth_query, None);
    assert_eq!(config.cache.publication, None, "test_decoding by default");
    assert_eq!(config.cache.ttl_unreplicated, Duration::from_secs(1));
}

#[test]
fn replication_settings_parse() {
    let config = Config::resolve(
        &cli(&["--publication", "shop", "--cache-ttl-unreplicated", "300ms"]),
        &FileConfig::default(),
    )
    .expect("valid");
    assert_eq!(config.cache.publication.as_deref(), Some("shop"));
    assert_eq!(config.cache.ttl_unreplicated, Duration::from_millis(300));
    let file: FileConfig =
        toml::from_str("cache_ttl_unreplicated = \"0\"\npublication = \"p\"\n").expect("toml");
    let config = Config::resolve(&cli(&[]), &file).expect("valid");
    assert_eq!(config.cache.ttl_unreplicated, Duration::ZERO);
    assert_eq!(config.cache.publication.as_deref(), Some("p"));
    for bad in [
        &["--publication", "no spaces"][..],
        &["--publication", ""],
        &["--cache-ttl-unreplicated", "soon"],
    ] {
        assert!(
            Config::resolve(&cli(bad), &FileConfig::default()).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn cache_settings_parse() {
    let config = Config::resolve(
        &cli(&[
            "--cache",
            "off",
            "--cache-size",
            "64MiB",
            "--cache-ttl",
            "30s",
        ]),
        &FileConfig::default(),
    )
    .expect("valid");
    assert_eq!(config.cache.mode, CacheMode::Off);
    assert_eq!(config.cache.size, 64 * 1024 * 1024);
    assert_eq!(config.cache.ttl, Some(Duration::from_secs(30)));
    assert!(Config::resolve(&cli(&["--cache-size", "lots"]), &FileConfig::default()).is_err());
}

#[test]
fn flag_beats_file_and_file_beats_default() {
    let file: FileConfig = toml::from_str(
        "listen = \"127.0.0.1:7000\"\nmax_client_conn = 5\nshutdown_timeout = \"2s\"\n",
    )
    .expect("valid toml");
    let config = Config::resolve(&cli(&["--listen", "127.0.0.1:8000"]), &file).expect("valid");
    assert_eq!(config.listen.port(), 8000);
    assert_eq!(config.max_client_conn, 5);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(2));
}

#[test]
fn table_lists_and_admin_users_parse_from_flags_and_file() {
    let file: FileConfig = toml::from_str(
        "cache_deny_tables = [\"sessions\"]\nadmin_users = [\"ops\"]\ncache_allow_tables = [\"a\"]\n",
    )
    .expect("valid toml");
    let config = Config::resolve(
        &cli(&["--cache-allow-tables", "products, shop.orders"]),
        &file,
    )
    .expect("valid");
    let shown = |tables: &[RelationName]| -> Vec<String> {
        tables.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        shown(&config.cache.allow_tables),
        vec!["products", "shop.orders"]
    );
    assert_eq!(shown(&config.cache.deny_tables), vec!["sessions"]);
    let mixed = Config::resolve(
        &cli(&["--cache-deny-tables", "Sessions,\"Audit Log\""]),
        &FileConfig::default(),
    )
    .expect("valid");
    assert_eq!(
        shown(&mixed.cache.deny_tables),
        vec!["sessions", "Audit Log"]
    );
    assert_eq!(config.admin_users, vec!["ops"]);
    let defaults = Config::resolve(&cli(&[]), &FileConfig::default()).expect("valid");
    assert!(defaults.admin_users.is_empty(), "console off by default");
    for bad in ["a.b.c", "a..b", ".a", "my table", "\"open"] {
        let result = Config::resolve(&cli(&["--cache-deny-tables", bad]), &FileConfig::default());
        assert!(
            matches!(result, Err(ConfigError::TableName { .. })),
            "{bad} accepted"
        );
    }
}

#[test]
fn shared_cache_settings_parse() {
    let none = Config::resolve(&cli(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(none.shared_cache, None);
    let config = Config::resolve(
        &cli(&[
            "--shared-cache",
            "redis://127.0.0.1:6379",
            "--shared-cache-ttl",
            "60s",
        ]),
        &FileConfig::default(),
    )
    .expect("valid");
    let shared = config.shared_cache.expect("set");
    assert_eq!(shared.ttl, Duration::from_secs(60));
    assert_eq!(shared.timeout, Duration::from_millis(20));
    assert_eq!(shared.max_entry, 512 * 1024);
    let file: FileConfig = toml::from_str(
        "shared_cache = \"redis+cluster://a:1,b:2\"\nshared_cache_timeout = \"5ms\"\n",
    )
    .expect("toml");
    let config = Config::resolve(&cli(&[]), &file).expect("valid");
    let shared = config.shared_cache.expect("set");
    assert!(shared.url.cluster);
    assert_eq!(shared.timeout, Duration::from_millis(5));
    for bad in [
        &["--shared-cache", "memcached://x"][..],
        &["--shared-cache", "redis://a:1", "--replication", "off"],
        &["--shared-cache", "redis://a:1", "--cache", "off"],
        &[
            "--shared-cache",
            "redis://a:1",
            "--shared-cache-ttl",
            "long",
        ],
    ] {
        assert!(
            Config::resolve(&cli(bad), &FileConfig::default()).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn unknown_file_keys_are_refused() {
    assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
}

#[test]
fn half_a_tls_pair_is_refused() {
    let result = Config::resolve(&cli(&["--tls-cert", "/x.pem"]), &FileConfig::default());
    assert!(matches!(result, Err(ConfigError::TlsPair)));
}

#[test]
fn example_config_file_is_valid() {
    let text = include_str!("../../../example.toml");
    let file: FileConfig = toml::from_str(text).expect("example.toml parses");
    Config::resolve(&cli(&[]), &file).expect("example.toml resolves");
}

#[test]
fn defer_begin_is_on_unless_turned_off() {
    let config = Config::resolve(&cli(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(config.cache.defer_begin, DeferBegin::On);
    let config =
        Config::resolve(&cli(&["--defer-begin", "off"]), &FileConfig::default()).expect("valid");
    assert_eq!(config.cache.defer_begin, DeferBegin::Off);
    let file: FileConfig = toml::from_str("defer_begin = \"off\"\n").expect("toml");
    let config = Config::resolve(&cli(&[]), &file).expect("valid");
    assert_eq!(config.cache.defer_begin, DeferBegin::Off);
    let config = Config::resolve(&cli(&["--defer-begin", "on"]), &file).expect("valid");
    assert_eq!(config.cache.defer_begin, DeferBegin::On, "the flag wins");
}

#[test]
fn replicas_borrow_the_upstream_credentials_and_name_one_host_each() {
    let config = Config::resolve(
        &cli(&[
            "--upstream",
            "postgres://pgcached:secret@primary:5432/app",
            "--replica",
            "postgres://r1:5433?sslmode=disable",
            "--replica",
            "postgres://checker:other@r2",
            "--replica-pool-size",
            "4",
        ]),
        &FileConfig::default(),
    )
    .expect("valid");
    let urls = &config.replicas.urls;
    assert_eq!(urls.len(), 2);
    assert_eq!(urls[0].address(), "r1:5433");
    assert_eq!(urls[0].user.as_deref(), Some("pgcached"));
    assert_eq!(urls[0].password.as_deref(), Some("secret"));
    assert_eq!(urls[0].database.as_deref(), Some("app"));
    assert_eq!(urls[1].user.as_deref(), Some("checker"), "its own kept");
    assert_eq!(config.replicas.pool_size, 4);

    let file: FileConfig =
        toml::from_str("replicas = [\"postgres://r3\"]\nreplica_pool_size = 2").expect("toml");
    let from_file =
        Config::resolve(&cli(&["--upstream", "postgres://u:p@primary"]), &file).expect("valid");
    assert_eq!(from_file.replicas.urls[0].address(), "r3:5432");
    assert_eq!(from_file.replicas.pool_size, 2);
    assert_eq!(
        Config::resolve(&cli(&[]), &FileConfig::default())
            .expect("valid")
            .replicas
            .pool_size,
        DEFAULT_REPLICA_POOL_SIZE
    );
}

#[test]
fn bad_replica_settings_are_refused_with_what_to_change() {
    let resolve = |args: &[&str]| Config::resolve(&cli(args), &FileConfig::default());
    assert!(matches!(
        resolve(&["--replica", "postgres://a:1,b:2"]),
        Err(ConfigError::Replica { .. })
    ));
    assert!(matches!(
        resolve(&["--replica", "mysql://a"]),
        Err(ConfigError::Replica { .. })
    ));
    assert!(matches!(
        resolve(&["--replica", "postgres://a", "--replica-pool-size", "0"]),
        Err(ConfigError::ReplicaPoolSize(_))
    ));
    let without_stream = resolve(&["--replica", "postgres://a", "--replication", "off"]);
    assert!(
        matches!(without_stream, Err(ConfigError::ReplicasWithoutStream)),
        "{without_stream:?}"
    );
    assert!(matches!(
        resolve(&["--replica", "postgres://a", "--cache", "off"]),
        Err(ConfigError::ReplicasWithoutStream)
    ));
    let anonymous = resolve(&["--replica", "postgres://a"]);
    assert!(
        matches!(anonymous, Err(ConfigError::ReplicasWithoutCredentials)),
        "{anonymous:?}"
    );
    assert!(anonymous
        .unwrap_err()
        .to_string()
        .contains("postgres://pgcached:secret@"));
}
