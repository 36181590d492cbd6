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
