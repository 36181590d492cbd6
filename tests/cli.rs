//! `credgate check-config --config FILE` (contract §2, §10): the binary itself,
//! run as a child process. A good config prints the effective TOML (every
//! default filled in, no secret) and exits 0; a bad one exits 64 with one
//! line on stderr naming the bad key.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// A 40-byte HS256 secret; it must never be printed.
const HS_SECRET: &str = "hs256-secret-that-must-never-be-printed!";
const HS_ENV: &str = "CREDGATE_CLI_TEST_HS256_SECRET";

/// A database password; it must never be printed.
const DB_PASSWORD: &str = "db-password-never-printed";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check_config(config: &Path) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .env(HS_ENV, HS_SECRET)
        .env_remove("RUST_LOG")
        .output()
        .expect("run credgate check-config");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

/// Issue 29: `--config credgate.toml` (no directory part) resolves every
/// relative path, `[audit] file` included, against the current directory.
#[test]
fn a_config_named_without_a_directory_resolves_relative_paths_from_here() {
    let keys = Keys::new();
    let path = keys.dir.write("credgate.toml", &builder(&keys).toml());
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["check-config", "--config", "credgate.toml"])
        .current_dir(path.parent().unwrap())
        .env(HS_ENV, HS_SECRET)
        .env_remove("RUST_LOG")
        .output()
        .expect("run credgate check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 29: `credgate` alone prints its commands (exit 2), not a config
/// error.
#[test]
fn credgate_alone_prints_its_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run credgate");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for command in ["serve", "check-config", "explain", "access", "emulator"] {
        assert!(text.contains(command), "{command} in {text}");
    }
    assert!(!text.contains("config error"), "{text}");
}

fn builder(keys: &Keys) -> ConfigBuilder<'_> {
    ConfigBuilder::new(keys, Hosts::all("http://127.0.0.1:9"))
}

/// Writes the builder's config next to the key files (relative key paths
/// resolve against the config's directory) and runs check-config on it.
fn run(keys: &Keys, toml: &str) -> Run {
    let path = keys.dir.write("credgate.toml", toml);
    check_config(&path)
}

/// Asserts exit 64 and exactly one stderr line that names `key`.
fn assert_config_error(r: &Run, key: &str) {
    assert_eq!(
        r.code,
        Some(64),
        "exit status; stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "stderr is one line: {:?}",
        r.stderr
    );
    assert!(r.stderr.ends_with('\n'), "{:?}", r.stderr);
    assert!(
        r.stderr.contains(&format!("`{key}`")),
        "stderr names `{key}`: {:?}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing on stdout: {:?}", r.stdout);
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let first = parts.next().unwrap();
    let mut v = t.get(first).unwrap_or_else(|| panic!("no `{path}`"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no `{path}`"));
    }
    v
}

fn assert_no_secrets(keys: &Keys, r: &Run) {
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains(HS_SECRET), "HS256 secret in {what}");
        assert!(!text.contains(DB_PASSWORD), "database password in {what}");
        assert!(!text.contains("PRIVATE KEY"), "a PEM key in {what}");
        assert!(!text.contains("BEGIN"), "PEM text in {what}");
        // A line from the middle of the base64 body of the signing key.
        let body_line = keys
            .paragon
            .private_pem
            .lines()
            .nth(3)
            .expect("a PEM body line");
        assert!(!text.contains(body_line), "signing key content in {what}");
    }
}

#[test]
fn valid_config_prints_effective_toml_with_defaults_and_no_secrets() {
    let keys = Keys::new();
    let mut b = builder(&keys);
    // An HS256 caller key whose secret comes from the environment, next to
    // the builder's RS256 key.
    b.extra_auth = format!(
        "algorithms = [\"RS256\", \"HS256\"]\n\
         [[auth.keys]]\nalgorithm = \"HS256\"\nsecret_env = \"{HS_ENV}\"\nkid = \"hs\"\n"
    );
    let toml = b.toml();
    // The file sets none of these: check-config must fill the defaults in.
    for unset in [
        "credentials_ttl",
        "max_users",
        "refresh_cooldown",
        "max_connections",
        "jwks_refresh",
        "token_ttl",
        "allow_account_auth",
    ] {
        assert!(!toml.contains(unset), "the test file sets {unset}");
    }
    let r = run(&keys, &toml);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);

    let t: toml::Table = r
        .stdout
        .parse()
        .unwrap_or_else(|e| panic!("stdout is not TOML: {e}\n{}", r.stdout));
    // Defaults (contract §10).
    assert_eq!(get(&t, "cache.credentials_ttl").as_str(), Some("1m"));
    assert_eq!(get(&t, "cache.max_users").as_integer(), Some(100_000));
    assert_eq!(get(&t, "cache.refresh_cooldown").as_str(), Some("5s"));
    assert_eq!(get(&t, "cache.stale_if_error").as_str(), Some("0s"));
    assert_eq!(get(&t, "server.max_connections").as_integer(), Some(10_000));
    assert_eq!(get(&t, "server.scheduler").as_str(), Some("workers"));
    assert_eq!(get(&t, "server.worker_threads").as_integer(), Some(0));
    assert_eq!(
        get(&t, "server.admin_hosts").as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(get(&t, "auth.mode").as_str(), Some("mint"));
    assert_eq!(get(&t, "auth.jwks_refresh").as_str(), Some("5m"));
    assert_eq!(get(&t, "auth.leeway").as_str(), Some("1m"));
    assert_eq!(get(&t, "paragon.token_ttl").as_str(), Some("5m"));
    assert_eq!(
        get(&t, "paragon.audience").as_str(),
        Some(format!("useparagon.com/{PROJECT}").as_str())
    );
    assert_eq!(
        get(&t, "policy.admin_default").as_str(),
        Some("passthrough")
    );
    assert_eq!(get(&t, "policy.allow_account_auth").as_bool(), Some(false));
    assert_eq!(
        get(&t, "policy.webhook_hosts").as_array().map(Vec::len),
        Some(0),
        "no webhook host by default (contract §3)"
    );
    // What the file did set is kept.
    assert_eq!(get(&t, "server.upstream_timeout").as_str(), Some("5s"));
    assert_eq!(get(&t, "auth.principal_claim").as_str(), Some("principal"));
    assert_eq!(get(&t, "paragon.project_id").as_str(), Some(PROJECT));
    // No [cluster] unless configured.
    assert!(t.get("cluster").is_none(), "{}", r.stdout);

    // Secrets: the HMAC key is named by its env var, key files by path.
    let auth_keys = get(&t, "auth.keys").as_array().expect("auth.keys array");
    assert_eq!(auth_keys.len(), 2, "{}", r.stdout);
    let hs = auth_keys
        .iter()
        .find(|k| k.get("algorithm").and_then(|a| a.as_str()) == Some("HS256"))
        .expect("the HS256 key is listed");
    assert_eq!(hs.get("secret_env").and_then(|v| v.as_str()), Some(HS_ENV));
    let signing = get(&t, "paragon.signing_key_file")
        .as_str()
        .expect("signing_key_file is a string");
    assert!(signing.ends_with("paragon.pem"), "{signing}");
    assert_no_secrets(&keys, &r);
}

#[test]
fn owner_external_id_is_warned_about_on_stderr() {
    let keys = Keys::new();
    // The builder sets `policy.owner_external_id = "{principal}"`.
    let with = builder(&keys);
    assert!(with.toml().contains("owner_external_id"));
    let r = run(&keys, &with.toml());
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("policy.owner_external_id"))
        .unwrap_or_else(|| panic!("no owner_external_id warning: {:?}", r.stderr));
    assert!(warning.contains("externalId"), "{warning}");
    // The warning goes to stderr only: stdout stays valid TOML.
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
    let t: toml::Table = r.stdout.parse().expect("stdout is TOML");
    assert_eq!(
        get(&t, "policy.owner_external_id").as_str(),
        Some("{principal}")
    );

    // Without it (a credentials claim instead), no such warning.
    let mut without = builder(&keys);
    without.extra_policy = "credentials_claim = \"creds\"\n".into();
    let r = run(&keys, &without.toml());
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        !r.stderr.contains("owner_external_id"),
        "unexpected warning: {:?}",
        r.stderr
    );
}

#[test]
fn unknown_key_exits_64_with_one_line_naming_it() {
    let keys = Keys::new();
    let r = run(&keys, &builder(&keys).cache("nonsense = 1").toml());
    assert_config_error(&r, "cache.nonsense");

    // In another table too.
    let r = run(
        &keys,
        &builder(&keys).server("lisen = \"0.0.0.0:80\"").toml(),
    );
    assert_config_error(&r, "server.lisen");
}

#[test]
fn wrong_type_exits_64_with_one_line_naming_the_key() {
    let keys = Keys::new();
    // An integer key given a string.
    let r = run(&keys, &builder(&keys).cache("max_users = \"lots\"").toml());
    assert_config_error(&r, "cache.max_users");

    // A duration (a string) given an integer.
    let r = run(&keys, &builder(&keys).server("shutdown_grace = 20").toml());
    assert_config_error(&r, "server.shutdown_grace");

    // A boolean given a string.
    let r = run(
        &keys,
        &builder(&keys).policy("allow_account_auth = \"yes\"").toml(),
    );
    assert_config_error(&r, "policy.allow_account_auth");
}

#[test]
fn a_bad_value_of_the_right_type_names_the_key() {
    let keys = Keys::new();
    let r = run(
        &keys,
        &builder(&keys)
            .cache("credentials_ttl = \"sixty seconds\"")
            .toml(),
    );
    assert_config_error(&r, "cache.credentials_ttl");
}

/// `server.admin_hosts` (contract §9) takes plain host names and IP
/// literals: a scheme, port, path, wildcard or junk exits 64 naming the
/// key; good names are printed lower-cased, without a trailing dot.
#[test]
fn admin_hosts_are_plain_names_or_addresses() {
    let keys = Keys::new();
    for bad in [
        "https://admin.example",
        "admin.example:9901",
        "admin.example/",
        "*.example",
        "*",
        "",
        "user@admin.example",
        "127.1",
        "[fd00::1]:9901",
        "two words",
    ] {
        let toml = builder(&keys)
            .server(&format!("admin_hosts = [\"ok.example\", {bad:?}]"))
            .toml();
        let r = run(&keys, &toml);
        assert_config_error(&r, "server.admin_hosts");
    }
    let toml = builder(&keys)
        .server(r#"admin_hosts = ["Admin.Example.", "10.0.0.7", "[FD00::1]", "credgate-admin"]"#)
        .toml();
    let r = run(&keys, &toml);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let t: toml::Table = r.stdout.parse().unwrap();
    assert_eq!(
        get(&t, "server.admin_hosts"),
        &toml::Value::Array(
            ["admin.example", "10.0.0.7", "fd00::1", "credgate-admin"]
                .map(|s| toml::Value::String(s.into()))
                .to_vec()
        )
    );
}

#[test]
fn missing_config_file_exits_64() {
    let dir = TempDir::new("cli-missing");
    let r = check_config(&dir.0.join("does-not-exist.toml"));
    assert_config_error(&r, "--config");
}

fn cluster_run(keys: &Keys, url: &str) -> (Run, toml::Table) {
    let mut b = builder(keys);
    b.extra_top = format!("[cluster]\npostgres_url = \"{url}\"\n");
    let r = run(keys, &b.toml());
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let t: toml::Table = r.stdout.parse().expect("stdout is TOML");
    (r, t)
}

#[test]
fn cluster_postgres_password_in_userinfo_is_redacted() {
    let keys = Keys::new();
    let (r, t) = cluster_run(
        &keys,
        &format!("postgres://credgate:{DB_PASSWORD}@db.internal:5432/credgate"),
    );
    let url = get(&t, "cluster.postgres_url").as_str().unwrap();
    assert_eq!(url, "postgres://credgate:***@db.internal:5432/credgate");
    // Cluster defaults (contract §11).
    assert_eq!(get(&t, "cluster.poll_interval").as_str(), Some("1s"));
    assert_eq!(get(&t, "cluster.event_retention").as_str(), Some("1h"));
    assert_eq!(get(&t, "cluster.degraded_ttl").as_str(), Some("10s"));
    assert_eq!(get(&t, "cluster.strict").as_bool(), Some(false));
    assert_no_secrets(&keys, &r);
}

#[test]
fn cluster_postgres_password_in_query_is_redacted() {
    let keys = Keys::new();
    // tokio-postgres (like libpq) takes the password as a query parameter too.
    let (r, t) = cluster_run(
        &keys,
        &format!(
            "postgres://credgate@db.internal:5432/credgate?sslmode=require&password={DB_PASSWORD}"
        ),
    );
    let url = get(&t, "cluster.postgres_url").as_str().unwrap();
    assert!(url.contains("sslmode=require"), "{url}");
    assert!(url.contains("password=***"), "{url}");
    assert_no_secrets(&keys, &r);
}

#[test]
fn cluster_url_without_password_is_printed_as_is() {
    let keys = Keys::new();
    let plain = "postgres://credgate@db.internal:5432/credgate?sslmode=require";
    let (_, t) = cluster_run(&keys, plain);
    assert_eq!(get(&t, "cluster.postgres_url").as_str(), Some(plain));
}

/// Settings that look fine but fail at run time are refused before a port
/// is bound, each naming its key: the project's public key given as the
/// signing key (every member request would be a 503), a placeholder or
/// non-UUID project id, placeholders left in `auth.audience` or
/// `auth.issuer`.
#[test]
fn settings_that_would_fail_at_run_time_are_refused() {
    let keys = Keys::new();
    let base = builder(&keys).toml();
    let cases: &[(&str, String)] = &[
        (
            "paragon.signing_key_file",
            base.replace(
                "signing_key_file = \"paragon.pem\"",
                "signing_key_file = \"paragon.pub.pem\"",
            ),
        ),
        (
            "paragon.project_id",
            base.replace(PROJECT, "REPLACE-WITH-YOUR-PROJECT-ID"),
        ),
        ("paragon.project_id", base.replace(PROJECT, "my-project")),
        (
            "auth.audience",
            builder(&keys)
                .auth("audience = [\"REPLACE-WITH-YOUR-AUDIENCE\"]")
                .toml(),
        ),
        (
            "auth.issuer",
            builder(&keys)
                .auth("issuer = \"https://REPLACE-WITH-YOUR-IDP/\"")
                .toml(),
        ),
        (
            "policy.enforce",
            builder(&keys).policy("enforce = \"log-only\"").toml(),
        ),
        (
            "server.scheduler",
            builder(&keys).server("scheduler = \"threads\"").toml(),
        ),
        (
            "policy.shadow_products",
            builder(&keys)
                .policy("enforce = \"shadow\"\nshadow_products = [\"proxy\"]")
                .toml(),
        ),
        (
            "policy.shadow_products",
            builder(&keys)
                .policy("shadow_products = [\"proxies\"]")
                .toml(),
        ),
        (
            "policy.rules_file",
            builder(&keys)
                .policy("rules_file = \"no-such-rules.toml\"")
                .toml(),
        ),
        (
            "policy.webhook_hosts",
            builder(&keys)
                .policy("webhook_hosts = [\"https://hooks.example/x\"]")
                .toml(),
        ),
        (
            "policy.webhook_hosts",
            builder(&keys)
                .policy("webhook_hosts = [\"*.example.com\"]")
                .toml(),
        ),
        (
            "limits.principal_rps",
            format!("[limits]\nprincipal_rps = 0\n{base}"),
        ),
        (
            "limits.user_burst",
            format!("[limits]\nuser_burst = 3\n{base}"),
        ),
    ];
    for (key, toml) in cases {
        assert_ne!(toml, &base, "{key}: the case changes the config");
        let r = run(&keys, toml);
        assert_config_error(&r, key);
    }
}

/// A rules file that does not compile: exit 64 and one line naming the
/// key, the file, the rule, the line of its `when` and the position in the
/// expression, for a syntax error and for each kind of check.
#[test]
fn bad_rules_are_config_errors_naming_the_rule_and_the_position() {
    let keys = Keys::new();
    let config = builder(&keys).policy("rules_file = \"rules.toml\"").toml();
    let rule = |when: &str| {
        format!("# a comment\n[[rule]]\nname = \"r1\"\neffect = \"deny\"\nwhen = {when:?}\n")
    };
    for (when, expect) in [
        ("request.method == ", "rule `r1` (line 5): `when` 1:"),
        (
            "request.methd == 'GET'",
            "rule `r1` (line 5): `when` 1:8: `request` has no field `methd`",
        ),
        (
            "request.method == 'GET' && size(caller.admin) > 0",
            "rule `r1` (line 5): `when` 1:32: `size` cannot take (bool)",
        ),
        (
            "credential.id",
            "rule `r1` (line 5): `when` must be a boolean; this expression is a string",
        ),
    ] {
        keys.dir.write("rules.toml", &rule(when));
        let r = run(&keys, &config);
        assert_config_error(&r, "policy.rules_file");
        assert!(
            r.stderr.contains("rules.toml: "),
            "names the file: {}",
            r.stderr
        );
        assert!(r.stderr.contains(expect), "{when}: {}", r.stderr);
    }
    // The example file compiles, and its rules are named in no warning.
    keys.dir.write(
        "rules.toml",
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.toml"),
        )
        .unwrap(),
    );
    let r = run(&keys, &config);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// Settings that are legal but most likely a mistake get a warning on
/// stderr (the config still validates, exit 0).
#[test]
fn risky_settings_are_warned_about() {
    let keys = Keys::new();
    keys.dir.write("empty-acl.toml", "");
    keys.dir.write(
        "shadow-rules.toml",
        "[[rule]]\nname = \"try-it\"\neffect = \"deny\"\nmode = \"shadow\"\nwhen = \"true\"\n",
    );
    keys.dir.write(
        "acl.toml",
        "[[grant]]\nprincipal = \"alice\"\nintegrations = [\"slack\"]\n",
    );
    let no_grant = {
        let mut b = builder(&keys);
        b.extra_policy.clear();
        b.toml()
    };
    let cases: &[(&str, String)] = &[
        ("no member grant", no_grant),
        (
            "grants nothing",
            builder(&keys)
                .policy("acl_file = \"empty-acl.toml\"")
                .toml(),
        ),
        (
            "any token your identity provider signs",
            builder(&keys)
                .auth("jwks_url = \"http://127.0.0.1:9/jwks.json\"")
                .toml(),
        ),
        (
            "not a loopback address",
            builder(&keys).toml().replace(
                "admin_listen = \"127.0.0.1:0\"",
                "admin_listen = \"0.0.0.0:0\"",
            ),
        ),
        (
            "name no `users`",
            builder(&keys).policy("acl_file = \"acl.toml\"").toml(),
        ),
        (
            "shadow mode is on for proxy, actionkit",
            builder(&keys)
                .policy("shadow_products = [\"proxy\", \"actionkit\"]")
                .toml(),
        ),
        (
            "shadow mode is on for every product",
            builder(&keys).policy("enforce = \"shadow\"").toml(),
        ),
        (
            "rule `try-it` is in shadow mode",
            builder(&keys)
                .policy("rules_file = \"shadow-rules.toml\"")
                .toml(),
        ),
    ];
    for (warning, toml) in cases {
        let r = run(&keys, toml);
        assert_eq!(r.code, Some(0), "{warning}: {}", r.stderr);
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(warning)),
            "a warning saying {warning:?}: {}",
            r.stderr
        );
    }
    // And none of them for the plain test config.
    let r = run(&keys, &builder(&keys).toml());
    for (warning, _) in cases {
        assert!(!r.stderr.contains(warning), "{warning}: {}", r.stderr);
    }
}

/// `[mcp]` (contract §10, §12): its defaults are printed, bad values name
/// their key (exit 64), and turning it on without `auth.issuer` warns.
#[test]
fn the_mcp_section_is_validated_and_its_defaults_printed() {
    let keys = Keys::new();
    let r = run(&keys, &builder(&keys).toml());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let t: toml::Table = toml::from_str(&r.stdout).unwrap();
    assert_eq!(get(&t, "mcp.enabled").as_bool(), Some(false));
    assert_eq!(get(&t, "mcp.proxy_tool").as_bool(), Some(false));
    assert_eq!(get(&t, "mcp.session_idle").as_str(), Some("30m"));
    assert_eq!(get(&t, "mcp.max_sessions").as_integer(), Some(10_000));
    assert_eq!(
        get(&t, "mcp.max_sessions_per_principal").as_integer(),
        Some(16)
    );
    for (section, key) in [
        (
            "[mcp]\nenabled = true\nsession_idle = \"0s\"\n",
            "mcp.session_idle",
        ),
        (
            "[mcp]\nenabled = true\nmax_sessions = 0\n",
            "mcp.max_sessions",
        ),
        ("[mcp]\nproxy_tool = true\n", "mcp.proxy_tool"),
        ("[mcp]\nenabled = true\nsessions = 5\n", "mcp.sessions"),
        (
            "[mcp]\nenabled = true\nmax_sessions_per_principal = 0\n",
            "mcp.max_sessions_per_principal",
        ),
        (
            "[mcp]\nenabled = true\nmax_sessions = 4\nmax_sessions_per_principal = 5\n",
            "mcp.max_sessions_per_principal",
        ),
    ] {
        let mut b = builder(&keys);
        b.extra_top = section.into();
        assert_config_error(&run(&keys, &b.toml()), key);
    }
    // Unset under a lower max_sessions: that.
    let mut b = builder(&keys);
    b.extra_top = "[mcp]\nmax_sessions = 4\n".into();
    let r = run(&keys, &b.toml());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let t: toml::Table = toml::from_str(&r.stdout).unwrap();
    assert_eq!(
        get(&t, "mcp.max_sessions_per_principal").as_integer(),
        Some(4)
    );
    let mut b = builder(&keys);
    b.extra_top = "[mcp]\nenabled = true\n".into();
    let r = run(&keys, &b.toml());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("auth.issuer"), "{}", r.stderr);
}
