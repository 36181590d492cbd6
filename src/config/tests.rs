use super::*;

#[test]
fn redacts_a_password_in_the_userinfo() {
    assert_eq!(
        redact_url_password("postgres://credgate:s3cret@db:5432/credgate"),
        "postgres://credgate:***@db:5432/credgate"
    );
}

#[test]
fn redacts_a_password_query_parameter() {
    let out =
        redact_url_password("postgres://credgate@db:5432/credgate?sslmode=require&password=s3cret");
    assert!(!out.contains("s3cret"), "{out}");
    assert_eq!(
        out,
        "postgres://credgate@db:5432/credgate?sslmode=require&password=***"
    );
    let both = redact_url_password("postgresql://u:a1@db/x?PASSWORD=b2");
    assert!(!both.contains("a1") && !both.contains("b2"), "{both}");
}

#[test]
fn leaves_a_url_without_a_password_alone() {
    let plain = "postgres://credgate@db:5432/credgate?sslmode=require";
    assert_eq!(redact_url_password(plain), plain);
    assert_eq!(redact_url_password("not a url"), "(unparseable URL)");
}

fn toml_key(text: &str) -> String {
    let err = toml::from_str::<RawConfig>(text).expect_err("a toml error");
    toml_error(text, &err).key
}

#[test]
fn a_toml_error_names_the_key() {
    assert_eq!(toml_key("[cache]\nnonsense = 1\n"), "cache.nonsense");
    assert_eq!(
        toml_key("[cache]\nmax_users = \"lots\"\n"),
        "cache.max_users"
    );
    assert_eq!(
        toml_key("[server]\nlisten = \"a\"\nshutdown_grace = 20\n"),
        "server.shutdown_grace"
    );
    assert_eq!(
        toml_key("[[auth.keys]]\nalgorithm = 256\n"),
        "auth.keys.algorithm"
    );
    assert_eq!(toml_key("cache = 5\n"), "cache");
}

/// Config by section: no file of `src/config` grows back into the
/// 1,800-line `mod.rs` that hid which check belongs to which key, and each
/// file says at its top what it owns.
#[test]
fn config_files_stay_small_and_say_what_they_own() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut bad = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        if lines > 1000 {
            bad.push(format!("{name}: {lines} lines (limit 1000)"));
        }
        if name != "tests.rs" && !text.starts_with("//!") {
            bad.push(format!("{name}: does not start with a `//!` paragraph"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
