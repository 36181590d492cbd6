//! Attack table for caller authentication (contract §4), driven through the
//! library's public API: `Config::from_toml` → `Authenticator` (with a real
//! `JwksSource` against a local key server where keys come from a JWKS).
//!
//! Every row asserts the exact `AuthError` variant or the accepted
//! `Identity`, so a check that silently stops running (or starts failing for
//! another reason) shows up as a changed variant, not as a still-green test.
//! Helpers live here: key fixtures (generated once per process), a temp dir,
//! a config builder, a `TokenBuilder` that can hand-craft headers, payloads
//! and signatures, and a tiny hyper server that serves a mutable JWKS and
//! counts every request it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use serde_json::{json, Map, Value};

use credgate::auth::jwks::{JwksSettings, JwksSource};
use credgate::auth::{unix_now, AuthError, Authenticator, Identity, Role, MAX_TOKEN_BYTES};
use credgate::config::Config;
use credgate::error::GatewayError;
use credgate::keygen::{self, PemPair};
use credgate::net::client::{build_client, ClientSettings};
use credgate::telemetry::Metrics;

// ---------------------------------------------------------------------------
// Key fixtures
// ---------------------------------------------------------------------------

/// Key pairs shared by every test in this process (RSA generation is the
/// slow part of this suite; doing it once keeps the suite quick).
struct Fixtures {
    /// The identity provider's RSA key (RS*/PS*).
    caller_rsa: PemPair,
    /// An RSA key nobody trusts: the attacker's, or a rotated-in key.
    other_rsa: PemPair,
    /// Paragon's key pair (mint: the signing key; passthrough: the verifier).
    paragon_rsa: PemPair,
    ec256: PemPair,
    ec384: PemPair,
    ed: PemPair,
}

fn fx() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        caller_rsa: keygen::rsa().expect("RSA key"),
        other_rsa: keygen::rsa().expect("RSA key"),
        paragon_rsa: keygen::rsa().expect("RSA key"),
        ec256: keygen::ecdsa(false).expect("P-256 key"),
        ec384: keygen::ecdsa(true).expect("P-384 key"),
        ed: keygen::ed25519().expect("Ed25519 key"),
    })
}

const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The HMAC secret for an HS algorithm: distinct per algorithm and as long
/// as RFC 7518 §3.2 requires (64 bytes covers HS512).
fn hs_secret(alg: Algorithm) -> String {
    format!("{alg:?}-test-secret-").repeat(6)
}

/// The env var name that holds `hs_secret(alg)` in the config's env map.
fn hs_env(alg: Algorithm) -> String {
    format!("CREDGATE_TEST_{alg:?}_SECRET")
}

/// The public PEM a config uses for an asymmetric algorithm.
fn public_pem(alg: Algorithm) -> &'static str {
    let f = fx();
    match alg {
        Algorithm::ES256 => &f.ec256.public_pem,
        Algorithm::ES384 => &f.ec384.public_pem,
        Algorithm::EdDSA => &f.ed.public_pem,
        _ => &f.caller_rsa.public_pem,
    }
}

/// The signing key matching [`public_pem`] / [`hs_secret`].
fn signing_key(alg: Algorithm) -> EncodingKey {
    let f = fx();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(hs_secret(alg).as_bytes())
        }
        Algorithm::ES256 => ec_key(&f.ec256),
        Algorithm::ES384 => ec_key(&f.ec384),
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(f.ed.private_pem.as_bytes()).expect("Ed25519 PEM")
        }
        _ => rsa_key(&f.caller_rsa),
    }
}

fn rsa_key(p: &PemPair) -> EncodingKey {
    EncodingKey::from_rsa_pem(p.private_pem.as_bytes()).expect("RSA PEM")
}

fn ec_key(p: &PemPair) -> EncodingKey {
    EncodingKey::from_ec_pem(p.private_pem.as_bytes()).expect("EC PEM")
}

fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// The RSA modulus of a key pair, as raw bytes and as its JWK text.
fn rsa_modulus(p: &PemPair) -> (Vec<u8>, String) {
    let jwk = rsa_jwk(p, "n", Some(Algorithm::RS256));
    let n = jwk["n"].as_str().expect("n").to_string();
    (URL_SAFE_NO_PAD.decode(&n).expect("base64url n"), n)
}

/// A public JWK for an RSA pair; `alg: None` leaves the JWK's `alg` out.
fn rsa_jwk(p: &PemPair, kid: &str, alg: Option<Algorithm>) -> Value {
    jwk_for(
        &rsa_key(p),
        alg.unwrap_or(Algorithm::RS256),
        kid,
        alg.is_some(),
    )
}

fn ec_jwk(p: &PemPair, alg: Algorithm, kid: &str) -> Value {
    jwk_for(&ec_key(p), alg, kid, true)
}

fn jwk_for(key: &EncodingKey, alg: Algorithm, kid: &str, keep_alg: bool) -> Value {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, alg).expect("JWK from key");
    let mut v = serde_json::to_value(jwk).expect("JWK serializes");
    let m = v.as_object_mut().expect("JWK is an object");
    m.insert("kid".into(), json!(kid));
    if !keep_alg {
        m.remove("alg");
    }
    assert!(!m.contains_key("d"), "a public JWK carries no private part");
    v
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// How the third segment is made.
#[derive(Clone)]
enum Sig {
    /// A real signature over the first two segments.
    Key(Algorithm, EncodingKey),
    /// These bytes, base64url-encoded.
    Bytes(Vec<u8>),
    /// This exact segment text (may be empty).
    Text(String),
}

/// Builds a JWS compact token whose every part can be wrong on purpose.
#[derive(Clone)]
struct TokenBuilder {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    /// Header JSON text used verbatim (duplicate members and the like).
    raw_header: Option<String>,
    /// First segment text used verbatim (bad base64).
    header_segment: Option<String>,
    raw_payload: Option<String>,
    payload_segment: Option<String>,
    sig: Sig,
}

impl TokenBuilder {
    /// `alg` in the header, signed with `key` as `alg`; claims
    /// `sub = "user-1"`, `exp` in five minutes, `iat` now.
    fn new(alg: Algorithm, key: EncodingKey) -> Self {
        Self::with_header_alg(&alg_name(alg), Sig::Key(alg, key))
    }

    /// The fixture key for `alg` (see [`signing_key`]).
    fn fixture(alg: Algorithm) -> Self {
        Self::new(alg, signing_key(alg))
    }

    /// The header says `alg` (any text); the signature is made by `sig`.
    fn with_header_alg(alg: &str, sig: Sig) -> Self {
        let now = unix_now();
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg));
        header.insert("typ".into(), json!("JWT"));
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("user-1"));
        claims.insert("exp".into(), json!(now + 300));
        claims.insert("iat".into(), json!(now));
        TokenBuilder {
            header,
            claims,
            raw_header: None,
            header_segment: None,
            raw_payload: None,
            payload_segment: None,
            sig,
        }
    }

    fn header(mut self, k: &str, v: Value) -> Self {
        self.header.insert(k.into(), v);
        self
    }

    fn kid(self, kid: &str) -> Self {
        self.header("kid", json!(kid))
    }

    fn claim(mut self, k: &str, v: Value) -> Self {
        self.claims.insert(k.into(), v);
        self
    }

    fn without(mut self, k: &str) -> Self {
        self.claims.remove(k);
        self
    }

    fn raw_header(mut self, json_text: &str) -> Self {
        self.raw_header = Some(json_text.into());
        self
    }

    fn header_segment(mut self, text: &str) -> Self {
        self.header_segment = Some(text.into());
        self
    }

    fn raw_payload(mut self, json_text: &str) -> Self {
        self.raw_payload = Some(json_text.into());
        self
    }

    fn payload_segment(mut self, text: &str) -> Self {
        self.payload_segment = Some(text.into());
        self
    }

    fn sig(mut self, sig: Sig) -> Self {
        self.sig = sig;
        self
    }

    fn build(&self) -> String {
        let h = match (&self.header_segment, &self.raw_header) {
            (Some(s), _) => s.clone(),
            (None, Some(j)) => URL_SAFE_NO_PAD.encode(j),
            (None, None) => URL_SAFE_NO_PAD.encode(Value::Object(self.header.clone()).to_string()),
        };
        let p = match (&self.payload_segment, &self.raw_payload) {
            (Some(s), _) => s.clone(),
            (None, Some(j)) => URL_SAFE_NO_PAD.encode(j),
            (None, None) => URL_SAFE_NO_PAD.encode(Value::Object(self.claims.clone()).to_string()),
        };
        let message = format!("{h}.{p}");
        let s = match &self.sig {
            Sig::Key(alg, key) => {
                jsonwebtoken::crypto::sign(message.as_bytes(), key, *alg).expect("signing works")
            }
            Sig::Bytes(b) => URL_SAFE_NO_PAD.encode(b),
            Sig::Text(t) => t.clone(),
        };
        format!("{message}.{s}")
    }
}

// ---------------------------------------------------------------------------
// Temp dir and config
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, unique per test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "credgate-auth-{}-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            keygen::uuid_v4()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p.to_str().expect("UTF-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[derive(Clone)]
struct KeySpec {
    alg: Algorithm,
    kid: Option<String>,
    /// A public PEM for RS/PS/ES/EdDSA; `None` means the HS secret of `alg`.
    pem: Option<String>,
}

impl KeySpec {
    /// The fixture key for `alg` (the HS secret via the env map, or the PEM).
    fn fixture(alg: Algorithm, kid: Option<&str>) -> Self {
        let pem = match alg.family() {
            AlgorithmFamily::Hmac => None,
            _ => Some(public_pem(alg).to_string()),
        };
        KeySpec {
            alg,
            kid: kid.map(str::to_string),
            pem,
        }
    }
}

/// Builds a config file (and its key files) the way an operator would.
#[derive(Clone)]
struct Setup {
    passthrough: bool,
    algorithms: Vec<Algorithm>,
    keys: Vec<KeySpec>,
    jwks_url: Option<String>,
    auth_lines: Vec<String>,
    policy_lines: Vec<String>,
    /// Replaces an HS key's secret in the env map (the "different secret" case).
    secret_override: HashMap<Algorithm, String>,
}

impl Setup {
    fn mint(algorithms: &[Algorithm]) -> Self {
        Setup {
            passthrough: false,
            algorithms: algorithms.to_vec(),
            keys: Vec::new(),
            jwks_url: None,
            auth_lines: Vec::new(),
            policy_lines: Vec::new(),
            secret_override: HashMap::new(),
        }
    }

    /// Mint mode, one RS256 key (the caller RSA key, no `kid`).
    fn rs256() -> Self {
        Self::mint(&[Algorithm::RS256]).key(KeySpec::fixture(Algorithm::RS256, None))
    }

    fn passthrough() -> Self {
        Setup {
            passthrough: true,
            ..Self::mint(&[])
        }
    }

    fn key(mut self, k: KeySpec) -> Self {
        self.keys.push(k);
        self
    }

    fn auth(mut self, line: &str) -> Self {
        self.auth_lines.push(line.into());
        self
    }

    fn policy(mut self, line: &str) -> Self {
        self.policy_lines.push(line.into());
        self
    }

    fn toml(&self, dir: &TempDir) -> (String, HashMap<String, String>) {
        let f = fx();
        let mut env = HashMap::new();
        let mut t =
            String::from("[paragon]\nproject_id = \"0000000a-0000-4000-8000-000000000000\"\n");
        if self.passthrough {
            let p = dir.write("paragon-public.pem", &f.paragon_rsa.public_pem);
            t += &format!("public_key_file = {}\n", q(&p));
        } else {
            let p = dir.write("paragon-signing.pem", &f.paragon_rsa.private_pem);
            t += &format!("signing_key_file = {}\n", q(&p));
        }
        t += "\n[auth]\n";
        if self.passthrough {
            t += "mode = \"passthrough\"\n";
        }
        if !self.algorithms.is_empty() {
            let names: Vec<String> = self.algorithms.iter().map(|a| q(&alg_name(*a))).collect();
            t += &format!("algorithms = [{}]\n", names.join(", "));
        }
        if let Some(u) = &self.jwks_url {
            t += &format!("jwks_url = {}\n", q(u));
        }
        for l in &self.auth_lines {
            t += l;
            t += "\n";
        }
        for (i, k) in self.keys.iter().enumerate() {
            t += &format!("\n[[auth.keys]]\nalgorithm = {}\n", q(&alg_name(k.alg)));
            if let Some(kid) = &k.kid {
                t += &format!("kid = {}\n", q(kid));
            }
            match &k.pem {
                Some(pem) => {
                    let p = dir.write(&format!("key-{i}.pem"), pem);
                    t += &format!("pem_file = {}\n", q(&p));
                }
                None => {
                    let var = format!("{}_{i}", hs_env(k.alg));
                    let secret = self
                        .secret_override
                        .get(&k.alg)
                        .cloned()
                        .unwrap_or_else(|| hs_secret(k.alg));
                    env.insert(var.clone(), secret);
                    t += &format!("secret_env = {}\n", q(&var));
                }
            }
        }
        if !self.policy_lines.is_empty() {
            t += "\n[policy]\n";
            for l in &self.policy_lines {
                t += l;
                t += "\n";
            }
        }
        (t, env)
    }

    fn config(&self, dir: &TempDir) -> Config {
        let (text, env) = self.toml(dir);
        match Config::from_toml(&text, &dir.0, &env) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}\n{text}"),
        }
    }

    fn build(&self) -> Harness {
        let dir = TempDir::new("static");
        let config = self.config(&dir);
        let metrics = Metrics::new();
        let auth = Authenticator::new(&config, None, metrics.clone()).expect("authenticator");
        Harness {
            auth: Arc::new(auth),
            metrics,
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------
// Running tables
// ---------------------------------------------------------------------------

struct Harness {
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    _dir: TempDir,
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
    );
    h
}

async fn check(auth: &Authenticator, token: &str) -> Result<Arc<Identity>, AuthError> {
    auth.authenticate(&bearer_headers(token)).await
}

/// What a row expects: accepted as this user, or refused with this error.
type Want = Result<&'static str, AuthError>;

/// Runs every row and reports all mismatches at once, by row name.
async fn run_table(auth: &Authenticator, rows: Vec<(&str, String, Want)>) {
    assert!(!rows.is_empty());
    let mut failures = Vec::new();
    for (name, token, want) in rows {
        let got = check(auth, &token).await;
        let ok = match (&got, &want) {
            (Ok(id), Ok(user)) => &*id.user == *user,
            (Err(g), Err(w)) => g == w,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "  {name}: want {want:?}, got {:?}",
                got.as_ref().map(|i| i.user.clone())
            ));
        }
        if let Err(e) = &got {
            // Every refusal of a caller is a 401 (contract §4, §8).
            let status = GatewayError::from(e.clone()).status();
            if status != http::StatusCode::UNAUTHORIZED {
                failures.push(format!("  {name}: {e:?} maps to {status}, not 401"));
            }
        }
    }
    assert!(failures.is_empty(), "rows failed:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The Authorization header
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorization_header_shape_is_checked_before_the_token() {
    let h = Setup::rs256().build();
    let good = TokenBuilder::fixture(Algorithm::RS256).build();

    let cases: Vec<(&str, Vec<&str>, Want)> = vec![
        ("missing header", vec![], Err(AuthError::Missing)),
        (
            "Basic scheme",
            vec!["Basic dXNlcjpwYXNz"],
            Err(AuthError::NotBearer),
        ),
        ("Token scheme", vec!["Token abc"], Err(AuthError::NotBearer)),
        (
            "token without scheme",
            vec!["eyJhbGciOi.x.y"],
            Err(AuthError::NotBearer),
        ),
        ("Bearer and nothing", vec!["Bearer"], Err(AuthError::Empty)),
        (
            "Bearer and spaces",
            vec!["Bearer    "],
            Err(AuthError::Empty),
        ),
        (
            "padding character",
            vec!["Bearer abc=.def.ghi"],
            Err(AuthError::Malformed("characters outside base64url")),
        ),
        (
            "two tokens",
            vec!["Bearer a.b.c d.e.f"],
            Err(AuthError::Malformed("characters outside base64url")),
        ),
    ];
    for (name, values, want) in cases {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        let got = h.auth.authenticate(&headers).await.map(|i| i.user.clone());
        assert_eq!(got.map(|_| "ok"), want, "{name}");
    }

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("{scheme} {good}")).unwrap(),
        );
        let id = h
            .auth
            .authenticate(&headers)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
        assert_eq!(&*id.user, "user-1", "{scheme}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused_even_when_both_are_valid() {
    let h = Setup::rs256().build();
    let good = TokenBuilder::fixture(Algorithm::RS256).build();
    let mut headers = HeaderMap::new();
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {good}")).unwrap(),
    );
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {good}")).unwrap(),
    );
    let err = h.auth.authenticate(&headers).await.unwrap_err();
    assert_eq!(err, AuthError::Repeated);
    assert_eq!(
        GatewayError::from(err).status(),
        http::StatusCode::UNAUTHORIZED
    );
    // The same token alone is fine, so the refusal is about the repetition.
    assert!(check(&h.auth, &good).await.is_ok());
}

#[tokio::test]
async fn tokens_over_8_kib_fail_before_decoding_and_8_kib_exactly_is_accepted() {
    let h = Setup::rs256().build();
    // Not a JWT at all: only the size check can produce TooLarge.
    let junk = "A".repeat(9 * 1024);
    assert_eq!(
        check(&h.auth, &junk).await.unwrap_err(),
        AuthError::TooLarge
    );
    assert_eq!(
        h.auth.authenticate_token(&junk).await.unwrap_err(),
        AuthError::TooLarge
    );
    // A validly signed 9 KiB token is refused just the same.
    let big = TokenBuilder::fixture(Algorithm::RS256)
        .claim("pad", json!("x".repeat(7000)))
        .build();
    assert!(big.len() > MAX_TOKEN_BYTES);
    assert_eq!(check(&h.auth, &big).await.unwrap_err(), AuthError::TooLarge);
    assert_eq!(
        h.metrics.verified_token_cache_misses.get(),
        0,
        "refused before the cache"
    );

    // Boundary: a token of exactly MAX_TOKEN_BYTES verifies.
    let exact = (5000..6200)
        .flat_map(|n| {
            ["JWT", "JWTX"].into_iter().map(move |typ| {
                TokenBuilder::fixture(Algorithm::RS256)
                    .header("typ", json!(typ))
                    .claim("pad", json!("x".repeat(n)))
                    .build()
            })
        })
        .find(|t| t.len() == MAX_TOKEN_BYTES)
        .expect("a padding that makes exactly 8 KiB");
    assert_eq!(&*check(&h.auth, &exact).await.unwrap().user, "user-1");
}

// ---------------------------------------------------------------------------
// Structure, alg, header
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_tokens_are_refused_with_the_reason() {
    let h = Setup::rs256().build();
    let rs = || TokenBuilder::fixture(Algorithm::RS256);
    let good = rs().build();
    let mut parts = good.split('.');
    let (hd, pl, sg) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );

    run_table(
        &h.auth,
        vec![
            ("valid control", good.clone(), Ok("user-1")),
            (
                "two segments",
                format!("{hd}.{pl}"),
                Err(AuthError::Malformed("a signed JWT has three segments")),
            ),
            (
                "four segments",
                format!("{hd}.{pl}.{sg}.{sg}"),
                Err(AuthError::Malformed("a signed JWT has three segments")),
            ),
            (
                "one segment",
                hd.to_string(),
                Err(AuthError::Malformed("a signed JWT has three segments")),
            ),
            (
                "empty header segment",
                format!(".{pl}.{sg}"),
                Err(AuthError::Malformed("empty segment")),
            ),
            (
                "empty payload segment",
                format!("{hd}..{sg}"),
                Err(AuthError::Malformed("empty segment")),
            ),
            (
                "header is not base64 (bad length)",
                rs().header_segment("A").build(),
                Err(AuthError::Malformed("bad base64 in the header")),
            ),
            (
                "header is base64 of non-JSON",
                rs().raw_header("not json").build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "header without alg",
                rs().raw_header(r#"{"typ":"JWT"}"#).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "non-string kid",
                rs().header("kid", json!(7)).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            // The payload is signed correctly, so only its decoding can fail.
            (
                "payload is not base64 (bad length)",
                rs().payload_segment("A").build(),
                Err(AuthError::Malformed("bad base64")),
            ),
            (
                "payload is base64 of non-JSON",
                rs().raw_payload("not json").build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
            (
                "payload is a JSON array",
                rs().raw_payload("[1,2]").build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
            (
                "five segments (JWE shape)",
                format!("{hd}.{pl}.{sg}.{sg}.{sg}"),
                Err(AuthError::Malformed("a signed JWT has three segments")),
            ),
            // `alg` is compared exactly (RFC 7515 §4.1.1 values are
            // case-sensitive), and must be a string.
            (
                "alg lowercase",
                rs().header("alg", json!("rs256")).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "alg with a trailing space",
                rs().header("alg", json!("RS256 ")).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "alg a number",
                rs().header("alg", json!(256)).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "alg an array",
                rs().header("alg", json!(["RS256"])).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "alg null",
                rs().header("alg", Value::Null).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
        ],
    )
    .await;

    // Through `authenticate_token` (no header parsing), an empty token is
    // still refused, not panicking on an empty split.
    assert_eq!(
        h.auth.authenticate_token("").await.unwrap_err(),
        AuthError::Malformed("a signed JWT has three segments")
    );
}

#[tokio::test]
async fn alg_none_in_any_spelling_is_refused_with_or_without_a_signature() {
    // Even with every real algorithm allowed, `none` has no key.
    let h = all_algorithms_setup().build();
    let real_sig = TokenBuilder::fixture(Algorithm::RS256).build();
    let real_sig = real_sig.rsplit('.').next().unwrap().to_string();
    let mut rows = Vec::new();
    for spelling in ["none", "None", "NONE", "nOnE"] {
        for (sig_name, sig) in [
            ("empty signature", Sig::Text(String::new())),
            ("junk signature", Sig::Bytes(b"not a signature".to_vec())),
            (
                "a valid RS256 signature of another message",
                Sig::Text(real_sig.clone()),
            ),
        ] {
            let t = TokenBuilder::with_header_alg(spelling, sig).build();
            rows.push((
                format!("alg {spelling}, {sig_name}"),
                t,
                Err(AuthError::AlgorithmNotAllowed),
            ));
        }
    }
    // The empty-signature form with a real algorithm name is refused too
    // (signature stripping).
    let stripped = TokenBuilder::fixture(Algorithm::RS256)
        .sig(Sig::Text(String::new()))
        .build();
    rows.push((
        "RS256 with the signature stripped".into(),
        stripped,
        Err(AuthError::AlgorithmNotAllowed),
    ));
    let rows = rows
        .iter()
        .map(|(n, t, w)| (n.as_str(), t.clone(), w.clone()))
        .collect();
    run_table(&h.auth, rows).await;
}

#[tokio::test]
async fn crit_jku_x5u_and_duplicate_header_members() {
    let h = Setup::rs256().build();
    let rs = || TokenBuilder::fixture(Algorithm::RS256);
    let rs_sig = |alg: Algorithm| Sig::Key(alg, signing_key(alg));
    run_table(
        &h.auth,
        vec![
            (
                "crit with a claim name",
                rs().header("crit", json!(["exp"])).build(),
                Err(AuthError::Crit),
            ),
            (
                "crit empty",
                rs().header("crit", json!([])).build(),
                Err(AuthError::Crit),
            ),
            (
                "crit null",
                rs().header("crit", Value::Null).build(),
                Err(AuthError::Crit),
            ),
            (
                "duplicate alg, same value",
                rs().raw_header(r#"{"alg":"RS256","alg":"RS256"}"#).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "duplicate alg, none first",
                rs().raw_header(r#"{"alg":"none","alg":"RS256"}"#).build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "duplicate alg, none last",
                TokenBuilder::with_header_alg("RS256", rs_sig(Algorithm::RS256))
                    .raw_header(r#"{"alg":"RS256","alg":"none"}"#)
                    .build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            (
                "duplicate kid",
                rs().raw_header(r#"{"alg":"RS256","kid":"a","kid":"b"}"#)
                    .build(),
                Err(AuthError::Malformed("bad JSON in the header")),
            ),
            // Control: the same raw-header path with a single alg verifies.
            (
                "single alg, raw header",
                rs().raw_header(r#"{"alg":"RS256"}"#).build(),
                Ok("user-1"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_never_verifies() {
    let f = fx();
    let pem = f.caller_rsa.public_pem.as_bytes().to_vec();
    let (n_raw, n_text) = rsa_modulus(&f.caller_rsa);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the public key PEM", pem.clone()),
        (
            "the PEM without its final newline",
            pem[..pem.len() - 1].to_vec(),
        ),
        ("the JWK n bytes", n_raw),
        ("the JWK n text", n_text.into_bytes()),
    ];
    let forged = |secret: &[u8], kid: Option<&str>| {
        let mut t = TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(secret));
        if let Some(k) = kid {
            t = t.kid(k);
        }
        t.build()
    };

    // 1. Only RS256 is configured: HS256 is not even an allowed algorithm.
    let only_rs = Setup::mint(&[Algorithm::RS256])
        .key(KeySpec::fixture(Algorithm::RS256, Some("rsa")))
        .build();
    let mut rows = Vec::new();
    for (name, s) in &secrets {
        rows.push((
            format!("RS256 only, {name}"),
            forged(s, None),
            Err(AuthError::AlgorithmNotAllowed),
        ));
        rows.push((
            format!("RS256 only, {name}, kid rsa"),
            forged(s, Some("rsa")),
            Err(AuthError::AlgorithmNotAllowed),
        ));
    }
    let rows_ref = rows
        .iter()
        .map(|(n, t, w)| (n.as_str(), t.clone(), w.clone()))
        .collect();
    run_table(&only_rs.auth, rows_ref).await;

    // 2. HS256 allowed globally, with its own (different) secret: the RSA key
    //    is bound to RS256 and never serves as an HMAC secret.
    let both = Setup::mint(&[Algorithm::RS256, Algorithm::HS256])
        .key(KeySpec::fixture(Algorithm::RS256, Some("rsa")))
        .key(KeySpec::fixture(Algorithm::HS256, Some("hs")))
        .build();
    let mut rows = Vec::new();
    for (name, s) in &secrets {
        rows.push((
            format!("HS allowed, {name}, no kid"),
            forged(s, None),
            Err(AuthError::BadSignature),
        ));
        rows.push((
            format!("HS allowed, {name}, kid rsa"),
            forged(s, Some("rsa")),
            Err(AuthError::NoKey),
        ));
        rows.push((
            format!("HS allowed, {name}, kid hs"),
            forged(s, Some("hs")),
            Err(AuthError::BadSignature),
        ));
    }
    // Controls: the real keys still work in this config.
    rows.push((
        "control RS256".into(),
        TokenBuilder::fixture(Algorithm::RS256).kid("rsa").build(),
        Ok("user-1"),
    ));
    rows.push((
        "control HS256".into(),
        TokenBuilder::fixture(Algorithm::HS256).kid("hs").build(),
        Ok("user-1"),
    ));
    let rows_ref = rows
        .iter()
        .map(|(n, t, w)| (n.as_str(), t.clone(), w.clone()))
        .collect();
    run_table(&both.auth, rows_ref).await;
}

#[tokio::test]
async fn an_algorithm_allowed_globally_but_not_for_the_key_has_no_key() {
    let h = Setup::mint(&[Algorithm::RS256, Algorithm::RS384, Algorithm::PS256])
        .key(KeySpec::fixture(Algorithm::RS256, Some("rs")))
        .build();
    let caller = || rsa_key(&fx().caller_rsa);
    run_table(
        &h.auth,
        vec![
            (
                "control RS256",
                TokenBuilder::new(Algorithm::RS256, caller())
                    .kid("rs")
                    .build(),
                Ok("user-1"),
            ),
            (
                "RS384 by the same RSA key, kid rs",
                TokenBuilder::new(Algorithm::RS384, caller())
                    .kid("rs")
                    .build(),
                Err(AuthError::NoKey),
            ),
            (
                "RS384 by the same RSA key, no kid",
                TokenBuilder::new(Algorithm::RS384, caller()).build(),
                Err(AuthError::NoKey),
            ),
            (
                "PS256 by the same RSA key",
                TokenBuilder::new(Algorithm::PS256, caller()).build(),
                Err(AuthError::NoKey),
            ),
            (
                "ES256 is not allowed at all",
                TokenBuilder::fixture(Algorithm::ES256).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn zero_and_wrong_signatures_fail() {
    let h = Setup::mint(&[Algorithm::RS256, Algorithm::ES256, Algorithm::ES384])
        .key(KeySpec::fixture(Algorithm::RS256, None))
        .key(KeySpec::fixture(Algorithm::ES256, None))
        .key(KeySpec::fixture(Algorithm::ES384, None))
        .build();
    let tampered = {
        let t = TokenBuilder::fixture(Algorithm::RS256).build();
        let sig = t.rsplit('.').next().unwrap();
        let other = TokenBuilder::fixture(Algorithm::RS256)
            .claim("sub", json!("admin"))
            .build();
        let mut parts: Vec<&str> = other.split('.').collect();
        parts[2] = sig;
        parts.join(".")
    };
    run_table(
        &h.auth,
        vec![
            (
                "control ES256",
                TokenBuilder::fixture(Algorithm::ES256).build(),
                Ok("user-1"),
            ),
            (
                "control ES384",
                TokenBuilder::fixture(Algorithm::ES384).build(),
                Ok("user-1"),
            ),
            // CVE-2022-21449 ("psychic signatures"): r = s = 0.
            (
                "ES256 r = s = 0 (64 zero bytes)",
                TokenBuilder::fixture(Algorithm::ES256)
                    .sig(Sig::Bytes(vec![0; 64]))
                    .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "ES384 r = s = 0 (96 zero bytes)",
                TokenBuilder::fixture(Algorithm::ES384)
                    .sig(Sig::Bytes(vec![0; 96]))
                    .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "ES256 r = s = 0 in DER form",
                TokenBuilder::fixture(Algorithm::ES256)
                    .sig(Sig::Bytes(vec![
                        0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00,
                    ]))
                    .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "RS256 all-zero signature",
                TokenBuilder::fixture(Algorithm::RS256)
                    .sig(Sig::Bytes(vec![0; 256]))
                    .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "RS256 by an untrusted key",
                TokenBuilder::new(Algorithm::RS256, rsa_key(&fx().other_rsa)).build(),
                Err(AuthError::BadSignature),
            ),
            (
                "RS256 with a swapped payload",
                tampered,
                Err(AuthError::BadSignature),
            ),
            (
                "ES256 header, ES384 signature by the P-384 key",
                TokenBuilder::with_header_alg(
                    "ES256",
                    Sig::Key(Algorithm::ES384, ec_key(&fx().ec384)),
                )
                .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "signature not base64",
                TokenBuilder::fixture(Algorithm::RS256)
                    .sig(Sig::Text("A".into()))
                    .build(),
                Err(AuthError::Malformed("bad base64")),
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Algorithm families
// ---------------------------------------------------------------------------

/// Every algorithm allowed, one key per algorithm with `kid` = its name.
fn all_algorithms_setup() -> Setup {
    ALL_ALGORITHMS
        .iter()
        .fold(Setup::mint(&ALL_ALGORITHMS), |s, a| {
            s.key(KeySpec::fixture(*a, Some(&alg_name(*a))))
        })
}

/// An algorithm of another family, whose key is in [`all_algorithms_setup`].
fn other_family(alg: Algorithm) -> Algorithm {
    match alg.family() {
        AlgorithmFamily::Hmac => Algorithm::RS256,
        AlgorithmFamily::Rsa => Algorithm::ES256,
        AlgorithmFamily::Ec => Algorithm::EdDSA,
        AlgorithmFamily::Ed => Algorithm::HS256,
    }
}

#[tokio::test]
async fn every_algorithm_family_verifies_its_own_tokens_and_no_other_familys() {
    let h = all_algorithms_setup().build();
    let mut rows = Vec::new();
    for alg in ALL_ALGORITHMS {
        let name = alg_name(alg);
        rows.push((
            format!("{name} with kid"),
            TokenBuilder::fixture(alg).kid(&name).build(),
            Ok("user-1"),
        ));
        rows.push((
            format!("{name} without kid"),
            TokenBuilder::fixture(alg).build(),
            Ok("user-1"),
        ));

        // Header says `alg`; the signature is a real one by another
        // family's key and algorithm.
        let other = other_family(alg);
        let forged = || TokenBuilder::with_header_alg(&name, Sig::Key(other, signing_key(other)));
        rows.push((
            format!("{name} header, {other:?} signature, kid of the {other:?} key"),
            forged().kid(&alg_name(other)).build(),
            Err(AuthError::NoKey),
        ));
        rows.push((
            format!("{name} header, {other:?} signature, no kid"),
            forged().build(),
            Err(AuthError::BadSignature),
        ));
        // The right key's kid with the wrong algorithm's signature.
        rows.push((
            format!("{name} header and kid, {other:?} signature"),
            forged().kid(&name).build(),
            Err(AuthError::BadSignature),
        ));
    }
    // Within a family, a key is still bound to one algorithm.
    rows.push((
        "RS384 header with the RS256 key's kid".into(),
        TokenBuilder::fixture(Algorithm::RS384).kid("RS256").build(),
        Err(AuthError::NoKey),
    ));
    rows.push((
        "PS256 signature under an RS256 header".into(),
        TokenBuilder::with_header_alg(
            "RS256",
            Sig::Key(Algorithm::PS256, signing_key(Algorithm::PS256)),
        )
        .build(),
        Err(AuthError::BadSignature),
    ));
    rows.push((
        "HS384 header with the HS256 secret".into(),
        TokenBuilder::new(Algorithm::HS384, signing_key(Algorithm::HS256)).build(),
        Err(AuthError::BadSignature),
    ));
    let rows_ref = rows
        .iter()
        .map(|(n, t, w)| (n.as_str(), t.clone(), w.clone()))
        .collect();
    run_table(&h.auth, rows_ref).await;
}

// ---------------------------------------------------------------------------
// Time claims
// ---------------------------------------------------------------------------

#[tokio::test]
async fn time_claims_honour_the_leeway_and_their_json_type() {
    // Default leeway: 60s.
    let h = Setup::rs256().build();
    let now = unix_now() as i64;
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    run_table(
        &h.auth,
        vec![
            ("control", t().build(), Ok("user-1")),
            (
                "exp 5 min ago (beyond leeway)",
                t().claim("exp", json!(now - 300)).build(),
                Err(AuthError::Expired),
            ),
            (
                "exp 70s ago (beyond leeway)",
                t().claim("exp", json!(now - 70)).build(),
                Err(AuthError::Expired),
            ),
            (
                "exp 30s ago (within leeway)",
                t().claim("exp", json!(now - 30)).build(),
                Ok("user-1"),
            ),
            (
                "nbf in 5 min (beyond leeway)",
                t().claim("nbf", json!(now + 300)).build(),
                Err(AuthError::NotYetValid),
            ),
            (
                "nbf in 30s (within leeway)",
                t().claim("nbf", json!(now + 30)).build(),
                Ok("user-1"),
            ),
            (
                "nbf in the past",
                t().claim("nbf", json!(now - 30)).build(),
                Ok("user-1"),
            ),
            (
                "iat in 5 min (beyond leeway)",
                t().claim("iat", json!(now + 300)).build(),
                Err(AuthError::IssuedInFuture),
            ),
            (
                "iat in 30s (within leeway)",
                t().claim("iat", json!(now + 30)).build(),
                Ok("user-1"),
            ),
            ("iat absent", t().without("iat").build(), Ok("user-1")),
            (
                "exp absent",
                t().without("exp").build(),
                Err(AuthError::MissingExp),
            ),
            (
                "exp as string",
                t().claim("exp", json!((now + 300).to_string())).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "exp null",
                t().claim("exp", Value::Null).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "exp empty array",
                t().claim("exp", json!([])).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            // jsonwebtoken's claim pre-parser loses its place inside a
            // non-empty array or object and fails the whole payload.
            (
                "exp array",
                t().claim("exp", json!([now + 300])).build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
            (
                "exp object",
                t().claim("exp", json!({"t": now + 300})).build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
            (
                "exp twice (later one expired)",
                t().raw_payload(&format!(
                    r#"{{"sub":"user-1","exp":{},"exp":{}}}"#,
                    now + 300,
                    now - 300
                ))
                .build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
            (
                "exp true",
                t().claim("exp", json!(true)).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "exp 1e30",
                t().raw_payload(r#"{"sub":"user-1","exp":1e30}"#).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "exp negative",
                t().claim("exp", json!(-1)).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "exp 2^64-1",
                t().claim("exp", json!(u64::MAX)).build(),
                Err(AuthError::ClaimType("exp")),
            ),
            (
                "nbf null",
                t().claim("nbf", Value::Null).build(),
                Err(AuthError::ClaimType("nbf")),
            ),
            (
                "nbf as string",
                t().claim("nbf", json!(now.to_string())).build(),
                Err(AuthError::ClaimType("nbf")),
            ),
            (
                "nbf negative",
                t().claim("nbf", json!(-5)).build(),
                Err(AuthError::ClaimType("nbf")),
            ),
            (
                "iat null",
                t().claim("iat", Value::Null).build(),
                Err(AuthError::ClaimType("iat")),
            ),
            (
                "iat as string",
                t().claim("iat", json!(now.to_string())).build(),
                Err(AuthError::ClaimType("iat")),
            ),
            (
                "iat array",
                t().claim("iat", json!([now])).build(),
                Err(AuthError::ClaimType("iat")),
            ),
            (
                "iat negative",
                t().claim("iat", json!(-1)).build(),
                Err(AuthError::ClaimType("iat")),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_configured_leeway_is_the_one_applied() {
    let h = Setup::rs256().auth("leeway = \"5s\"").build();
    let now = unix_now() as i64;
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    run_table(
        &h.auth,
        vec![
            (
                "exp 30s ago, leeway 5s",
                t().claim("exp", json!(now - 30)).build(),
                Err(AuthError::Expired),
            ),
            (
                "nbf in 30s, leeway 5s",
                t().claim("nbf", json!(now + 30)).build(),
                Err(AuthError::NotYetValid),
            ),
            (
                "iat in 30s, leeway 5s",
                t().claim("iat", json!(now + 30)).build(),
                Err(AuthError::IssuedInFuture),
            ),
            (
                "exp 2s ago, leeway 5s",
                t().claim("exp", json!(now - 2)).build(),
                Ok("user-1"),
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Issuer and audience
// ---------------------------------------------------------------------------

#[tokio::test]
async fn issuer_is_required_and_must_match_when_configured() {
    let h = Setup::rs256()
        .auth("issuer = \"https://idp.example\"")
        .build();
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    run_table(
        &h.auth,
        vec![
            (
                "right iss",
                t().claim("iss", json!("https://idp.example")).build(),
                Ok("user-1"),
            ),
            (
                "wrong iss",
                t().claim("iss", json!("https://evil.example")).build(),
                Err(AuthError::BadIssuer),
            ),
            (
                "iss differing in case",
                t().claim("iss", json!("https://IDP.example")).build(),
                Err(AuthError::BadIssuer),
            ),
            (
                "iss with trailing slash",
                t().claim("iss", json!("https://idp.example/")).build(),
                Err(AuthError::BadIssuer),
            ),
            ("missing iss", t().build(), Err(AuthError::BadIssuer)),
            (
                "iss null",
                t().claim("iss", Value::Null).build(),
                Err(AuthError::BadIssuer),
            ),
            (
                "iss number",
                t().claim("iss", json!(1)).build(),
                Err(AuthError::BadIssuer),
            ),
            // RFC 7519 §4.1.1: iss is one StringOrURI. An array that merely
            // contains ours is not our issuer.
            (
                "iss array containing ours",
                t().claim(
                    "iss",
                    json!(["https://evil.example", "https://idp.example"]),
                )
                .build(),
                Err(AuthError::BadIssuer),
            ),
        ],
    )
    .await;

    // Without auth.issuer, iss is not checked.
    let open = Setup::rs256().build();
    assert!(check(
        &open.auth,
        &t().claim("iss", json!("https://anyone")).build()
    )
    .await
    .is_ok());
}

#[tokio::test]
async fn audience_string_config_accepts_string_or_array_tokens_containing_it() {
    let h = Setup::rs256().auth("audience = \"credgate\"").build();
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    run_table(
        &h.auth,
        vec![
            (
                "aud string, ours",
                t().claim("aud", json!("credgate")).build(),
                Ok("user-1"),
            ),
            (
                "aud array with ours",
                t().claim("aud", json!(["other", "credgate"])).build(),
                Ok("user-1"),
            ),
            ("aud missing", t().build(), Err(AuthError::BadAudience)),
            (
                "aud wrong",
                t().claim("aud", json!("other")).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud array without ours",
                t().claim("aud", json!(["a", "b"])).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud [\"\"]",
                t().claim("aud", json!([""])).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud empty string",
                t().claim("aud", json!("")).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud empty array",
                t().claim("aud", json!([])).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud null",
                t().claim("aud", Value::Null).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud number",
                t().claim("aud", json!(5)).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud array with ours and a number",
                t().claim("aud", json!(["credgate", 5])).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud differing in case",
                t().claim("aud", json!("CredGate")).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud twice (ours, then another)",
                t().raw_payload(&format!(
                    r#"{{"sub":"user-1","exp":{},"aud":"credgate","aud":"other"}}"#,
                    unix_now() + 300
                ))
                .build(),
                Err(AuthError::Malformed("bad JSON")),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn audience_list_config_accepts_any_of_its_values() {
    let h = Setup::rs256()
        .auth("audience = [\"api-a\", \"api-b\"]")
        .build();
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    run_table(
        &h.auth,
        vec![
            (
                "aud first value",
                t().claim("aud", json!("api-a")).build(),
                Ok("user-1"),
            ),
            (
                "aud second value",
                t().claim("aud", json!("api-b")).build(),
                Ok("user-1"),
            ),
            (
                "aud array with the second",
                t().claim("aud", json!(["x", "api-b"])).build(),
                Ok("user-1"),
            ),
            (
                "aud other",
                t().claim("aud", json!("api-c")).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud array without any",
                t().claim("aud", json!(["api-c", "x"])).build(),
                Err(AuthError::BadAudience),
            ),
            ("aud missing", t().build(), Err(AuthError::BadAudience)),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

#[tokio::test]
async fn user_and_principal_come_from_their_claims() {
    let h = Setup::rs256()
        .auth("user_claim = \"paragon_user\"")
        .auth("principal_claim = \"email\"")
        .build();
    let t = || {
        TokenBuilder::fixture(Algorithm::RS256)
            .claim("paragon_user", json!("acme"))
            .claim("email", json!("alice@acme.example"))
    };
    let id = check(&h.auth, &t().build()).await.unwrap();
    assert_eq!(&*id.user, "acme");
    assert_eq!(&*id.principal, "alice@acme.example");
    assert_eq!(
        id.role,
        Role::Member {
            claimed: Box::default()
        }
    );
    assert!(id.permissions_key.is_none());

    run_table(
        &h.auth,
        vec![
            (
                "missing user claim (sub present)",
                t().without("paragon_user").build(),
                Err(AuthError::MissingIdentity("user")),
            ),
            (
                "user claim a number",
                t().claim("paragon_user", json!(42)).build(),
                Err(AuthError::MissingIdentity("user")),
            ),
            (
                "user claim an array",
                t().claim("paragon_user", json!(["acme"])).build(),
                Err(AuthError::MissingIdentity("user")),
            ),
            (
                "user claim empty",
                t().claim("paragon_user", json!("")).build(),
                Err(AuthError::MissingIdentity("user")),
            ),
            (
                "user claim null",
                t().claim("paragon_user", Value::Null).build(),
                Err(AuthError::MissingIdentity("user")),
            ),
            (
                "missing principal claim",
                t().without("email").build(),
                Err(AuthError::MissingIdentity("principal")),
            ),
            (
                "principal claim an object",
                t().claim("email", json!({})).build(),
                Err(AuthError::MissingIdentity("principal")),
            ),
        ],
    )
    .await;

    // Defaults: both are `sub`.
    let d = Setup::rs256().build();
    let id = check(
        &d.auth,
        &TokenBuilder::fixture(Algorithm::RS256)
            .claim("sub", json!("bob"))
            .build(),
    )
    .await
    .unwrap();
    assert_eq!((&*id.user, &*id.principal), ("bob", "bob"));
    assert_eq!(
        check(
            &d.auth,
            &TokenBuilder::fixture(Algorithm::RS256)
                .without("sub")
                .build()
        )
        .await
        .unwrap_err(),
        AuthError::MissingIdentity("user")
    );
}

#[tokio::test]
async fn admin_comes_from_a_string_or_array_admin_claim() {
    let h = Setup::rs256()
        .auth("admin_claim = \"roles\"")
        .auth("admin_values = [\"admin\", \"owner\"]")
        .policy("credentials_claim = \"creds\"")
        .build();
    let t = || TokenBuilder::fixture(Algorithm::RS256);
    let role = |token: String| {
        let auth = h.auth.clone();
        async move { check(&auth, &token).await.map(|i| i.role.clone()) }
    };
    let member = |ids: &[&str]| Role::Member {
        claimed: ids.iter().map(|s| Box::<str>::from(*s)).collect(),
    };
    assert_eq!(
        role(t().claim("roles", json!("admin")).build()).await,
        Ok(Role::Admin)
    );
    assert_eq!(
        role(t().claim("roles", json!(["user", "owner"])).build()).await,
        Ok(Role::Admin)
    );
    assert_eq!(
        role(t().claim("roles", json!("user")).build()).await,
        Ok(member(&[]))
    );
    assert_eq!(
        role(t().claim("roles", json!("Admin")).build()).await,
        Ok(member(&[])),
        "exact match"
    );
    assert_eq!(
        role(t().claim("roles", json!(["user"])).build()).await,
        Ok(member(&[]))
    );
    assert_eq!(
        role(t().claim("roles", json!({"admin": true})).build()).await,
        Ok(member(&[]))
    );
    assert_eq!(
        role(t().claim("roles", json!(1)).build()).await,
        Ok(member(&[]))
    );
    assert_eq!(role(t().build()).await, Ok(member(&[])));
    // A member's credentials claim: lowercased; anything but an array of
    // strings fails the token.
    assert_eq!(
        role(t().claim("creds", json!(["AbC-1", "x-2"])).build()).await,
        Ok(member(&["abc-1", "x-2"]))
    );
    assert_eq!(
        role(t().claim("creds", json!([])).build()).await,
        Ok(member(&[]))
    );
    assert_eq!(
        role(t().claim("creds", json!("abc-1")).build()).await,
        Err(AuthError::ClaimType("credentials"))
    );
    assert_eq!(
        role(t().claim("creds", json!(["abc-1", 2])).build()).await,
        Err(AuthError::ClaimType("credentials"))
    );
    assert_eq!(
        role(t().claim("creds", json!(null)).build()).await,
        Err(AuthError::ClaimType("credentials"))
    );
    // An admin's credentials claim is irrelevant, even a malformed one.
    assert_eq!(
        role(
            t().claim("roles", json!("admin"))
                .claim("creds", json!("junk"))
                .build()
        )
        .await,
        Ok(Role::Admin)
    );
}

// ---------------------------------------------------------------------------
// Static keys with kid; jku / x5u / jwk
// ---------------------------------------------------------------------------

#[tokio::test]
async fn static_kids_select_keys_and_unknown_kids_find_none() {
    let h = Setup::mint(&[Algorithm::RS256])
        .key(KeySpec::fixture(Algorithm::RS256, Some("k1")))
        .key(KeySpec {
            alg: Algorithm::RS256,
            kid: Some("k2".into()),
            pem: Some(fx().other_rsa.public_pem.clone()),
        })
        .build();
    let other = || TokenBuilder::new(Algorithm::RS256, rsa_key(&fx().other_rsa));
    run_table(
        &h.auth,
        vec![
            (
                "kid k1",
                TokenBuilder::fixture(Algorithm::RS256).kid("k1").build(),
                Ok("user-1"),
            ),
            ("kid k2", other().kid("k2").build(), Ok("user-1")),
            (
                "no kid, first key",
                TokenBuilder::fixture(Algorithm::RS256).build(),
                Ok("user-1"),
            ),
            ("no kid, second key", other().build(), Ok("user-1")),
            (
                "k2's token under kid k1",
                other().kid("k1").build(),
                Err(AuthError::BadSignature),
            ),
            (
                "unknown kid",
                TokenBuilder::fixture(Algorithm::RS256).kid("k9").build(),
                Err(AuthError::NoKey),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn jku_x5u_and_embedded_jwk_headers_are_never_used() {
    let f = fx();
    // The attacker's key server offers the attacker's key at every path.
    let attacker_jwks =
        json!({"keys": [rsa_jwk(&f.other_rsa, "attacker", Some(Algorithm::RS256))]});
    let evil = KeyServer::start(attacker_jwks).await;
    let jku = evil.url("/attacker-jwks.json");
    let x5u = evil.url("/attacker.pem");
    let embedded = rsa_jwk(&f.other_rsa, "attacker", Some(Algorithm::RS256));
    let attacker = || TokenBuilder::new(Algorithm::RS256, rsa_key(&f.other_rsa));

    let rows = |jwks_configured: bool| {
        vec![
            (
                "jku, kid attacker",
                attacker().kid("attacker").header("jku", json!(jku)).build(),
                Err(AuthError::NoKey),
            ),
            (
                "jku, no kid",
                attacker().header("jku", json!(jku)).build(),
                Err(AuthError::BadSignature),
            ),
            (
                "x5u, no kid",
                attacker().header("x5u", json!(x5u)).build(),
                Err(AuthError::BadSignature),
            ),
            (
                "jwk embedded, no kid",
                attacker().header("jwk", embedded.clone()).build(),
                Err(AuthError::BadSignature),
            ),
            (
                "jwk embedded, kid attacker",
                attacker()
                    .kid("attacker")
                    .header("jwk", embedded.clone())
                    .build(),
                Err(AuthError::NoKey),
            ),
            (
                "all three at once",
                attacker()
                    .header("jku", json!(jku))
                    .header("x5u", json!(x5u))
                    .header("jwk", embedded.clone())
                    .build(),
                Err(AuthError::BadSignature),
            ),
            // Control: a legitimate token carrying the same headers is
            // verified with the configured key (the headers are ignored, not
            // a reason to refuse).
            (
                "legit token with a jku header",
                TokenBuilder::fixture(Algorithm::RS256)
                    .kid(if jwks_configured { "idp" } else { "k1" })
                    .header("jku", json!(jku))
                    .build(),
                Ok("user-1"),
            ),
        ]
    };

    // Static keys.
    let h = Setup::mint(&[Algorithm::RS256])
        .key(KeySpec::fixture(Algorithm::RS256, Some("k1")))
        .build();
    run_table(&h.auth, rows(false)).await;
    assert_eq!(evil.total_hits(), 0, "the attacker's server was contacted");

    // A JWKS source (on another server): jku must not redirect it either.
    let j = JwksHarness::start(
        json!({"keys": [rsa_jwk(&f.caller_rsa, "idp", Some(Algorithm::RS256))]}),
        &[],
        true,
    )
    .await;
    j.wait_ready().await;
    run_table(&j.auth, rows(true)).await;
    assert_eq!(evil.total_hits(), 0, "the attacker's server was contacted");
    assert!(j.server.hits("/jwks.json") >= 1);
    assert!(
        j.source
            .keys()
            .iter()
            .all(|k| k.kid.as_deref() == Some("idp")),
        "only the configured JWKS's keys are loaded"
    );
}

// ---------------------------------------------------------------------------
// Verified-token cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_second_call_with_the_same_token_is_a_cache_hit() {
    let h = Setup::rs256().build();
    let token = TokenBuilder::fixture(Algorithm::RS256).build();
    let first = check(&h.auth, &token).await.unwrap();
    assert_eq!(h.metrics.verified_token_cache_misses.get(), 1);
    assert_eq!(h.metrics.verified_token_cache_hits.get(), 0);
    let second = check(&h.auth, &token).await.unwrap();
    assert_eq!(h.metrics.verified_token_cache_hits.get(), 1);
    assert_eq!(h.metrics.verified_token_cache_misses.get(), 1);
    assert!(
        Arc::ptr_eq(&first, &second),
        "the cached identity is returned"
    );

    // Refusals are not cached: a bad token misses every time.
    let bad = TokenBuilder::new(Algorithm::RS256, rsa_key(&fx().other_rsa)).build();
    for _ in 0..2 {
        assert_eq!(
            check(&h.auth, &bad).await.unwrap_err(),
            AuthError::BadSignature
        );
    }
    assert_eq!(h.metrics.verified_token_cache_misses.get(), 3);
    assert_eq!(h.metrics.verified_token_cache_hits.get(), 1);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_past_exp_plus_leeway() {
    let h = Setup::rs256().auth("leeway = \"2s\"").build();
    // Expires now: valid through now + 2s of leeway (room for two calls).
    let exp = unix_now();
    let token = TokenBuilder::fixture(Algorithm::RS256)
        .claim("exp", json!(exp))
        .build();
    check(&h.auth, &token)
        .await
        .expect("valid within the leeway");
    check(&h.auth, &token).await.expect("cached");
    assert_eq!(h.metrics.verified_token_cache_hits.get(), 1);

    // Wait (bounded) until the clock is past exp + leeway.
    wait_until("the token to expire", || unix_now() > exp + 2).await;
    assert_eq!(
        check(&h.auth, &token).await.unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        h.metrics.verified_token_cache_hits.get(),
        1,
        "an expired token is not served from the cache"
    );
}

// ---------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------

/// Serves one JSON document at every path with a settable status, and
/// counts requests per path.
struct KeyServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

struct ServerState {
    doc: Mutex<Value>,
    status: AtomicU16,
    hits: Mutex<HashMap<String, usize>>,
    /// Held before answering (after counting), to keep a fetch in flight.
    delay: Mutex<Duration>,
}

impl KeyServer {
    async fn start(doc: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(ServerState {
            doc: Mutex::new(doc),
            status: AtomicU16::new(200),
            hits: Mutex::new(HashMap::new()),
            delay: Mutex::new(Duration::ZERO),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it closes the listener and every
            // connection, so "the server is gone" means refused connections.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move {
                                let delay = st.count(req.uri().path());
                                tokio::time::sleep(delay).await;
                                Ok::<_, std::convert::Infallible>(st.respond())
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        KeyServer { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set_doc(&self, doc: Value) {
        *self.state.doc.lock().unwrap() = doc;
    }

    fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerState {
    /// Counts a request; returns how long to hold it.
    fn count(&self, path: &str) -> Duration {
        *self
            .hits
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default() += 1;
        *self.delay.lock().unwrap()
    }

    fn respond(&self) -> http::Response<Full<Bytes>> {
        let status = self.status.load(Ordering::SeqCst);
        let body = if status == 200 {
            self.doc.lock().unwrap().to_string()
        } else {
            "{\"error\":\"down\"}".to_string()
        };
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    }
}

/// A mint-mode authenticator whose keys come from a [`KeyServer`].
struct JwksHarness {
    server: KeyServer,
    source: Arc<JwksSource>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    _dir: TempDir,
}

const JWKS_PATH: &str = "/jwks.json";

impl JwksHarness {
    /// `lines` go into `[auth]` (durations, algorithms). With `refresher`,
    /// the background refresher is started (the initial fetch begins).
    async fn start(doc: Value, lines: &[&str], refresher: bool) -> Self {
        Self::start_with(doc, Setup::mint(&[Algorithm::RS256]), lines, refresher).await
    }

    async fn start_with(doc: Value, mut setup: Setup, lines: &[&str], refresher: bool) -> Self {
        let server = KeyServer::start(doc).await;
        setup.jwks_url = Some(server.url(JWKS_PATH));
        setup.auth_lines.push("jwks_timeout = \"2s\"".into());
        for l in lines {
            setup.auth_lines.push((*l).into());
        }
        let dir = TempDir::new("jwks");
        let config = setup.config(&dir);
        let metrics = Metrics::new();
        let a = &config.auth;
        let client = build_client(
            None,
            &ClientSettings {
                connect_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(30),
                max_idle_per_host: 4,
            },
        )
        .expect("client");
        let source = JwksSource::new(
            JwksSettings {
                url: a.jwks_url.clone().expect("jwks_url"),
                refresh: a.jwks_refresh,
                min_refetch: a.jwks_min_refetch,
                timeout: a.jwks_timeout,
                algorithms: a.algorithms.clone(),
            },
            client,
            metrics.clone(),
        )
        .expect("source");
        let auth = Authenticator::new(&config, Some(source.clone()), metrics.clone())
            .expect("authenticator");
        if refresher {
            source.spawn_refresher();
        }
        JwksHarness {
            server,
            source,
            auth: Arc::new(auth),
            metrics,
            _dir: dir,
        }
    }

    async fn wait_ready(&self) {
        wait_until("the JWKS to load", || self.auth.ready()).await;
    }

    fn fetches(&self) -> usize {
        self.server.hits(JWKS_PATH)
    }
}

/// Polls `cond` every 20 ms for at most 10 s; a state to reach, never a
/// duration to assert.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn idp_token(kid: &str) -> String {
    TokenBuilder::fixture(Algorithm::RS256).kid(kid).build()
}

fn other_token(kid: &str) -> String {
    TokenBuilder::new(Algorithm::RS256, rsa_key(&fx().other_rsa))
        .kid(kid)
        .build()
}

fn jwks(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

#[tokio::test]
async fn jwks_is_fetched_at_start_and_readiness_follows_it() {
    let k1 = rsa_jwk(&fx().caller_rsa, "k1", Some(Algorithm::RS256));
    let j = JwksHarness::start(jwks(vec![k1]), &["jwks_refresh = \"1h\""], false).await;
    assert!(!j.auth.ready(), "not ready before the first fetch");
    // A token without kid cannot trigger a fetch: no keys yet.
    let no_kid = TokenBuilder::fixture(Algorithm::RS256).build();
    assert_eq!(
        check(&j.auth, &no_kid).await.unwrap_err(),
        AuthError::KeysUnavailable
    );
    assert_eq!(j.fetches(), 0);

    j.source.spawn_refresher();
    j.wait_ready().await;
    assert_eq!(j.fetches(), 1, "one fetch at start");
    assert_eq!(j.metrics.jwks_fetches.get(), 1);
    assert_eq!(
        check(&j.auth, &no_kid).await.unwrap().user.as_ref(),
        "user-1"
    );
    assert_eq!(
        check(&j.auth, &idp_token("k1"))
            .await
            .unwrap()
            .user
            .as_ref(),
        "user-1"
    );
    assert_eq!(j.fetches(), 1, "known kids cause no fetch");
}

#[tokio::test]
async fn a_rotated_in_key_verifies_without_restart() {
    let f = fx();
    let k1 = rsa_jwk(&f.caller_rsa, "k1", Some(Algorithm::RS256));
    let k2 = rsa_jwk(&f.other_rsa, "k2", Some(Algorithm::RS256));
    let j = JwksHarness::start(
        jwks(vec![k1.clone()]),
        &["jwks_refresh = \"1h\"", "jwks_min_refetch = \"1s\""],
        true,
    )
    .await;
    j.wait_ready().await;
    assert_eq!(j.fetches(), 1);
    // Before rotation, k2 is unknown; that refetch is within the cooldown
    // of the start fetch, so it is not even attempted.
    assert_eq!(
        check(&j.auth, &other_token("k2")).await.unwrap_err(),
        AuthError::NoKey
    );
    assert_eq!(
        j.fetches(),
        1,
        "unknown kid inside jwks_min_refetch: no fetch"
    );

    j.server.set_doc(jwks(vec![k1, k2]));
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_min_refetch
    let id = check(&j.auth, &other_token("k2"))
        .await
        .expect("rotated-in key verifies");
    assert_eq!(&*id.user, "user-1");
    assert_eq!(j.fetches(), 2, "exactly one refetch for the unknown kid");
    // The old key still works, and k2 is now known: no more fetches.
    check(&j.auth, &idp_token("k1")).await.unwrap();
    check(&j.auth, &other_token("k2")).await.unwrap();
    assert_eq!(j.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_unknown_kid_cause_one_fetch() {
    let f = fx();
    let k1 = rsa_jwk(&f.caller_rsa, "k1", Some(Algorithm::RS256));
    let k2 = rsa_jwk(&f.other_rsa, "k2", Some(Algorithm::RS256));
    let j = JwksHarness::start(
        jwks(vec![k1.clone()]),
        &["jwks_refresh = \"1h\"", "jwks_min_refetch = \"1s\""],
        true,
    )
    .await;
    j.wait_ready().await;
    j.server.set_doc(jwks(vec![k1, k2]));
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_min_refetch
    assert_eq!(j.fetches(), 1);

    // 100 distinct tokens (so the verified-token cache cannot coalesce them)
    // naming the same new kid, released together.
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let token = TokenBuilder::new(Algorithm::RS256, rsa_key(&f.other_rsa))
            .kid("k2")
            .claim("sub", json!(format!("user-{i}")))
            .build();
        let (auth, barrier) = (j.auth.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            check(&auth, &token).await.map(|id| id.user.to_string())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), Ok(format!("user-{i}")));
    }
    assert_eq!(
        j.fetches(),
        2,
        "100 concurrent unknown-kid requests: one fetch"
    );
    assert_eq!(j.metrics.jwks_fetches.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_arriving_during_a_refetch_waits_for_its_result() {
    // Regression: the cooldown is marked when a fetch starts, and callers
    // inside it used to return at once and verify against the old set.
    let f = fx();
    let k2 = rsa_jwk(&f.other_rsa, "k2", Some(Algorithm::RS256));
    let j = JwksHarness::start(
        jwks(vec![k2]),
        &["jwks_refresh = \"1h\"", "jwks_min_refetch = \"1h\""],
        false,
    )
    .await;
    j.server.set_delay(Duration::from_millis(1000));
    let first = {
        let auth = j.auth.clone();
        tokio::spawn(async move {
            check(&auth, &other_token("k2"))
                .await
                .map(|i| i.user.to_string())
        })
    };
    // The fetch has reached the server and is being held there.
    wait_until("the refetch to be in flight", || j.fetches() == 1).await;
    assert!(!j.auth.ready());
    let second = TokenBuilder::new(Algorithm::RS256, rsa_key(&f.other_rsa))
        .kid("k2")
        .claim("sub", json!("user-2"))
        .build();
    let id = check(&j.auth, &second)
        .await
        .expect("waits for the in-flight fetch");
    assert_eq!(&*id.user, "user-2");
    assert_eq!(first.await.unwrap(), Ok("user-1".to_string()));
    assert_eq!(j.fetches(), 1, "both requests shared one fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_cannot_make_credgate_hammer_the_idp() {
    let k1 = rsa_jwk(&fx().caller_rsa, "k1", Some(Algorithm::RS256));
    // No refresher: the first unknown kid makes the first fetch; then the
    // cooldown (1h) holds for every other kid.
    let j = JwksHarness::start(
        jwks(vec![k1]),
        &["jwks_refresh = \"1h\"", "jwks_min_refetch = \"1h\""],
        false,
    )
    .await;
    // The signature does not matter: an unknown kid is decided before it.
    let tokens: Vec<String> = (0..1000)
        .map(|_| {
            TokenBuilder::with_header_alg("RS256", Sig::Bytes(vec![7; 256]))
                .kid(&keygen::uuid_v4())
                .build()
        })
        .collect();
    let mut tasks = Vec::new();
    for token in tokens {
        let auth = j.auth.clone();
        tasks.push(tokio::spawn(async move {
            check(&auth, &token).await.map(|_| ())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(AuthError::NoKey));
    }
    assert_eq!(
        j.fetches(),
        1,
        "1000 random kids within jwks_min_refetch: one fetch"
    );
    assert!(j.auth.ready(), "that one fetch loaded the set");
}

#[tokio::test]
async fn random_kids_refetch_at_most_once_per_min_refetch() {
    let k1 = rsa_jwk(&fx().caller_rsa, "k1", Some(Algorithm::RS256));
    let min_refetch = Duration::from_secs(1);
    let j = JwksHarness::start(
        jwks(vec![k1]),
        &["jwks_refresh = \"1h\"", "jwks_min_refetch = \"1s\""],
        false,
    )
    .await;
    // Keep asking with fresh random kids for a little over two cooldowns.
    let start = Instant::now();
    let mut asked = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let t = TokenBuilder::with_header_alg("RS256", Sig::Bytes(vec![7; 256]))
            .kid(&keygen::uuid_v4())
            .build();
        assert_eq!(check(&j.auth, &t).await.unwrap_err(), AuthError::NoKey);
        asked += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let fetches = j.fetches();
    let bound = 1 + (elapsed.as_millis() / min_refetch.as_millis()) as usize;
    assert!(
        fetches >= 2,
        "refetching resumes after the cooldown ({fetches} fetches)"
    );
    assert!(
        fetches <= bound,
        "{asked} unknown kids over {elapsed:?} made {fetches} fetches, more than one per jwks_min_refetch"
    );
}

#[tokio::test]
async fn a_removed_key_stops_verifying_after_the_next_refresh_even_when_cached() {
    let f = fx();
    let k1 = rsa_jwk(&f.caller_rsa, "k1", Some(Algorithm::RS256));
    let k2 = rsa_jwk(&f.other_rsa, "k2", Some(Algorithm::RS256));
    let j = JwksHarness::start(
        jwks(vec![k1, k2.clone()]),
        &["jwks_refresh = \"1s\"", "jwks_min_refetch = \"1h\""],
        true,
    )
    .await;
    j.wait_ready().await;
    let revoked = idp_token("k1");
    let kept = other_token("k2");
    check(&j.auth, &revoked).await.unwrap();
    check(&j.auth, &revoked).await.unwrap();
    check(&j.auth, &kept).await.unwrap();
    assert_eq!(
        j.metrics.verified_token_cache_hits.get(),
        1,
        "k1's token is cached"
    );

    let generation = j.source.generation();
    j.server.set_doc(jwks(vec![k2]));
    wait_until("a refresh that drops k1", || {
        j.source.generation() > generation
    })
    .await;
    assert!(j
        .source
        .keys()
        .iter()
        .all(|k| k.kid.as_deref() != Some("k1")));

    let hits = j.metrics.verified_token_cache_hits.get();
    assert_eq!(
        check(&j.auth, &revoked).await.unwrap_err(),
        AuthError::NoKey
    );
    assert_eq!(
        j.metrics.verified_token_cache_hits.get(),
        hits,
        "the cached identity was not used"
    );
    // The same key material without a kid is gone too (no-kid token).
    let no_kid = TokenBuilder::fixture(Algorithm::RS256).build();
    assert_eq!(
        check(&j.auth, &no_kid).await.unwrap_err(),
        AuthError::BadSignature
    );
    // The surviving key keeps working.
    check(&j.auth, &kept).await.unwrap();
}

#[tokio::test]
async fn a_jwks_outage_keeps_the_last_good_key_set() {
    let k1 = rsa_jwk(&fx().caller_rsa, "k1", Some(Algorithm::RS256));
    let j = JwksHarness::start(
        jwks(vec![k1]),
        &["jwks_refresh = \"1s\"", "jwks_min_refetch = \"1h\""],
        true,
    )
    .await;
    j.wait_ready().await;
    assert_eq!(j.metrics.jwks_fetch_failures.get(), 0);

    // The IdP answers 500.
    j.server.set_status(500);
    wait_until("a failed refresh (500)", || {
        j.metrics.jwks_fetch_failures.get() >= 1
    })
    .await;
    assert!(j.auth.ready(), "still ready on the last good set");
    check(&j.auth, &idp_token("k1"))
        .await
        .expect("verifies during a 500 outage");

    // The IdP answers 200 with garbage: also not a replacement.
    j.server.set_status(200);
    j.server.set_doc(json!({"not": "a jwks"}));
    let failures = j.metrics.jwks_fetch_failures.get();
    wait_until("a failed refresh (not a JWKS)", || {
        j.metrics.jwks_fetch_failures.get() > failures
    })
    .await;
    check(&j.auth, &idp_token("k1"))
        .await
        .expect("verifies after a bad document");

    // The IdP is gone (connections refused).
    j.server.stop();
    let failures = j.metrics.jwks_fetch_failures.get();
    wait_until("a failed refresh (server gone)", || {
        j.metrics.jwks_fetch_failures.get() > failures
    })
    .await;
    let fresh = TokenBuilder::fixture(Algorithm::RS256)
        .kid("k1")
        .claim("sub", json!("user-2"))
        .build();
    assert_eq!(
        &*check(&j.auth, &fresh)
            .await
            .expect("verifies with the server gone")
            .user,
        "user-2"
    );
    assert_eq!(j.source.keys().len(), 1);
}

#[tokio::test]
async fn oct_jwks_entries_never_verify_asymmetric_algorithms() {
    let secret = b"jwks-oct-secret-jwks-oct-secret-jwks-oct-secret!";
    let k = URL_SAFE_NO_PAD.encode(secret);
    let doc = jwks(vec![
        json!({"kty": "oct", "k": k, "kid": "oct-noalg"}),
        json!({"kty": "oct", "k": k, "kid": "oct-rs", "alg": "RS256"}),
        json!({"kty": "oct", "k": k, "kid": "oct-es", "alg": "ES256"}),
        rsa_jwk(&fx().caller_rsa, "rsa", None),
        ec_jwk(&fx().ec256, Algorithm::ES256, "ec"),
    ]);
    let setup = Setup::mint(&[Algorithm::RS256, Algorithm::ES256, Algorithm::HS256]);
    let j = JwksHarness::start_with(doc, setup, &["jwks_min_refetch = \"1h\""], true).await;
    j.wait_ready().await;

    for k in j.source.keys().iter() {
        if k.kid.as_deref().is_some_and(|kid| kid.starts_with("oct")) {
            assert_eq!(
                k.algorithm,
                Algorithm::HS256,
                "{:?} loaded for {:?}",
                k.kid,
                k.algorithm
            );
        }
    }
    let hmac = |kid: &str, header_alg: &str| {
        TokenBuilder::with_header_alg(
            header_alg,
            Sig::Key(Algorithm::HS256, EncodingKey::from_secret(secret)),
        )
        .kid(kid)
        .build()
    };
    let mut rows = Vec::new();
    for kid in ["oct-noalg", "oct-rs", "oct-es"] {
        for alg in ["RS256", "ES256"] {
            rows.push((
                format!("{alg} header, HMAC by {kid}"),
                hmac(kid, alg),
                Err(AuthError::NoKey),
            ));
        }
    }
    // Without a kid the RSA/EC keys are tried and fail; the oct keys are not.
    rows.push((
        "RS256 header, HMAC, no kid".into(),
        {
            TokenBuilder::with_header_alg(
                "RS256",
                Sig::Key(Algorithm::HS256, EncodingKey::from_secret(secret)),
            )
            .build()
        },
        Err(AuthError::BadSignature),
    ));
    // Controls: the oct key does verify HS256, and the asymmetric keys theirs.
    rows.push((
        "HS256 by oct-noalg".into(),
        hmac("oct-noalg", "HS256"),
        Ok("user-1"),
    ));
    rows.push((
        "oct-rs is not an HS256 key".into(),
        hmac("oct-rs", "HS256"),
        Err(AuthError::NoKey),
    ));
    rows.push(("RS256 control".into(), idp_token("rsa"), Ok("user-1")));
    rows.push((
        "ES256 control".into(),
        TokenBuilder::fixture(Algorithm::ES256).kid("ec").build(),
        Ok("user-1"),
    ));
    let rows_ref = rows
        .iter()
        .map(|(n, t, w)| (n.as_str(), t.clone(), w.clone()))
        .collect();
    run_table(&j.auth, rows_ref).await;
}

#[tokio::test]
async fn jwks_keys_for_encryption_or_other_algorithms_are_not_used() {
    let f = fx();
    let mut enc = rsa_jwk(&f.other_rsa, "enc", Some(Algorithm::RS256));
    enc["use"] = json!("enc");
    let mut sig = rsa_jwk(&f.caller_rsa, "sig", None);
    sig["use"] = json!("sig");
    let pinned = rsa_jwk(&f.caller_rsa, "pinned", Some(Algorithm::RS256));
    let doc = jwks(vec![enc, sig, pinned]);
    let setup = Setup::mint(&[Algorithm::RS256, Algorithm::PS256, Algorithm::HS256]);
    let j = JwksHarness::start_with(doc, setup, &["jwks_min_refetch = \"1h\""], true).await;
    j.wait_ready().await;
    assert!(
        j.source
            .keys()
            .iter()
            .all(|k| k.kid.as_deref() != Some("enc")),
        "use: enc is skipped"
    );

    let (n_raw, _) = rsa_modulus(&f.caller_rsa);
    let pem = f.caller_rsa.public_pem.as_bytes();
    run_table(
        &j.auth,
        vec![
            ("use enc key", other_token("enc"), Err(AuthError::NoKey)),
            (
                "use enc key, no kid",
                TokenBuilder::new(Algorithm::RS256, rsa_key(&f.other_rsa)).build(),
                Err(AuthError::BadSignature),
            ),
            ("use sig key, RS256", idp_token("sig"), Ok("user-1")),
            // Without `alg`, the key serves its type's allowed algorithms.
            (
                "use sig key, PS256",
                TokenBuilder::fixture(Algorithm::PS256).kid("sig").build(),
                Ok("user-1"),
            ),
            // With `alg`, only that one.
            ("pinned RS256 key, RS256", idp_token("pinned"), Ok("user-1")),
            (
                "pinned RS256 key, PS256",
                TokenBuilder::fixture(Algorithm::PS256)
                    .kid("pinned")
                    .build(),
                Err(AuthError::NoKey),
            ),
            // HS256 is allowed, but an RSA JWK is never an HMAC secret.
            (
                "HS256 with n bytes, kid sig",
                TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(&n_raw))
                    .kid("sig")
                    .build(),
                Err(AuthError::NoKey),
            ),
            (
                "HS256 with the PEM, kid pinned",
                TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(pem))
                    .kid("pinned")
                    .build(),
                Err(AuthError::NoKey),
            ),
            (
                "HS256 with the PEM, no kid",
                TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(pem)).build(),
                Err(AuthError::NoKey),
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Passthrough mode
// ---------------------------------------------------------------------------

fn paragon_token() -> TokenBuilder {
    TokenBuilder::new(Algorithm::RS256, rsa_key(&fx().paragon_rsa)).claim("sub", json!("cu-42"))
}

const PERMISSIONS: &str = "urn:useparagon:connect:permissions";

#[tokio::test]
async fn passthrough_user_and_principal_are_sub_and_no_claim_is_admin() {
    let h = Setup::passthrough().build();
    let id = check(&h.auth, &paragon_token().build()).await.unwrap();
    assert_eq!((&*id.user, &*id.principal), ("cu-42", "cu-42"));
    assert_eq!(id.role, Role::Admin);
    assert!(id.permissions_key.is_none());

    // Mint-mode identity settings do not apply.
    let id = check(
        &h.auth,
        &paragon_token()
            .claim("email", json!("x@y"))
            .claim("roles", json!("admin"))
            .build(),
    )
    .await
    .unwrap();
    assert_eq!(&*id.principal, "cu-42");
    assert_eq!(
        check(&h.auth, &paragon_token().without("sub").build())
            .await
            .unwrap_err(),
        AuthError::MissingIdentity("sub")
    );
}

#[tokio::test]
async fn passthrough_permissions_claim_is_the_policy_and_specific_scopes_win() {
    let h = Setup::passthrough().build();
    let scoped = |claim: Value| {
        let auth = h.auth.clone();
        async move {
            let id = check(
                &auth,
                &paragon_token().claim(PERMISSIONS, claim.clone()).build(),
            )
            .await
            .unwrap();
            assert_eq!(
                id.permissions_key.as_deref(),
                Some(claim.to_string().as_str())
            );
            match &id.role {
                Role::Scoped(p) => p.clone(),
                other => panic!("expected Scoped for {claim}, got {other:?}"),
            }
        }
    };

    let p = scoped(json!({
        "integration:*": true,
        "integration:gmail": false,
        "integration:slack": {"credential:*": false, "credential:AAA": true}
    }))
    .await;
    assert!(
        p.allows("salesforce", "any"),
        "integration:* grants unnamed integrations"
    );
    assert!(
        !p.allows("gmail", "any"),
        "integration:gmail beats integration:*"
    );
    assert!(
        p.allows("slack", "aaa"),
        "credential:<id> beats credential:*, case-insensitively"
    );
    assert!(!p.allows("slack", "bbb"), "credential:* false for the rest");

    let p = scoped(json!({"integration:*": false, "integration:slack": {"credential:*": true, "credential:bad": false}})).await;
    assert!(p.allows("slack", "good"));
    assert!(!p.allows("slack", "bad"));
    assert!(!p.allows("hubspot", "good"));

    let p =
        scoped(json!({"integration:hubspot": {"credential:c1": {"configuration:*": true}}})).await;
    assert!(
        p.allows("hubspot", "c1"),
        "a nested object grants its credential"
    );
    assert!(
        !p.allows("hubspot", "c2"),
        "unlisted credentials are not granted"
    );
    assert!(!p.allows("slack", "c1"));

    let p = scoped(json!({"integration:sharepoint": {"credential:*": ["credential:write"]}})).await;
    assert!(
        !p.allows("sharepoint", "any"),
        "credential:write grants no existing credential"
    );

    let p = scoped(json!({})).await;
    assert!(
        !p.allows("slack", "x"),
        "an empty claim grants nothing (it is not admin)"
    );
}

#[tokio::test]
async fn passthrough_refuses_permissions_it_does_not_understand() {
    let h = Setup::passthrough().build();
    let t = |claim: Value| paragon_token().claim(PERMISSIONS, claim).build();
    run_table(
        &h.auth,
        vec![
            (
                "unknown permission value",
                t(json!({"integration:slack": ["proxy:read"]})),
                Err(AuthError::BadPermissions),
            ),
            (
                "unknown top-level scope",
                t(json!({"integrations:*": true})),
                Err(AuthError::BadPermissions),
            ),
            (
                "credential scope at the top",
                t(json!({"credential:a": true})),
                Err(AuthError::BadPermissions),
            ),
            (
                "unknown nested scope",
                t(json!({"integration:slack": {"workflow:a": true}})),
                Err(AuthError::BadPermissions),
            ),
            (
                "unknown configuration scope",
                t(json!({"integration:slack": {"credential:a": {"configuration:a": true}}})),
                Err(AuthError::BadPermissions),
            ),
            (
                "number value",
                t(json!({"integration:slack": 1})),
                Err(AuthError::BadPermissions),
            ),
            (
                "string value",
                t(json!({"integration:slack": "true"})),
                Err(AuthError::BadPermissions),
            ),
            (
                "null value",
                t(json!({"integration:slack": null})),
                Err(AuthError::BadPermissions),
            ),
            (
                "claim is a string",
                t(json!("integration:*")),
                Err(AuthError::BadPermissions),
            ),
            (
                "claim is null",
                t(Value::Null),
                Err(AuthError::BadPermissions),
            ),
            (
                "claim is an array",
                t(json!([])),
                Err(AuthError::BadPermissions),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn passthrough_checks_paragon_signature_audience_and_algorithm() {
    // Even with HS256 listed and an HS key configured, passthrough verifies
    // only RS256 with paragon.public_key_file.
    let h = Setup {
        algorithms: vec![Algorithm::RS256, Algorithm::HS256],
        ..Setup::passthrough()
    }
    .key(KeySpec::fixture(Algorithm::HS256, None))
    .build();
    let f = fx();
    let paragon_pem = f.paragon_rsa.public_pem.as_bytes();
    let (n_raw, _) = rsa_modulus(&f.paragon_rsa);
    run_table(
        &h.auth,
        vec![
            ("control", paragon_token().build(), Ok("cu-42")),
            (
                "our aud",
                paragon_token()
                    .claim(
                        "aud",
                        json!("useparagon.com/0000000a-0000-4000-8000-000000000000"),
                    )
                    .build(),
                Ok("cu-42"),
            ),
            (
                "our aud in an array",
                paragon_token()
                    .claim(
                        "aud",
                        json!(["x", "useparagon.com/0000000a-0000-4000-8000-000000000000"]),
                    )
                    .build(),
                Ok("cu-42"),
            ),
            (
                "foreign aud",
                paragon_token()
                    .claim("aud", json!("useparagon.com/other"))
                    .build(),
                Err(AuthError::BadAudience),
            ),
            (
                "foreign aud array",
                paragon_token()
                    .claim("aud", json!(["useparagon.com/other"]))
                    .build(),
                Err(AuthError::BadAudience),
            ),
            (
                "empty aud array",
                paragon_token().claim("aud", json!([])).build(),
                Err(AuthError::BadAudience),
            ),
            // A foreign audience in a shape jsonwebtoken does not parse must
            // not slip past the check.
            (
                "foreign aud mixed with a number",
                paragon_token()
                    .claim("aud", json!(["useparagon.com/other", 1]))
                    .build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud a number",
                paragon_token().claim("aud", json!(7)).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud an object",
                paragon_token().claim("aud", json!({"a": 1})).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "aud null",
                paragon_token().claim("aud", Value::Null).build(),
                Err(AuthError::BadAudience),
            ),
            (
                "signed by a caller key, not Paragon's",
                TokenBuilder::fixture(Algorithm::RS256)
                    .claim("sub", json!("cu-42"))
                    .build(),
                Err(AuthError::BadSignature),
            ),
            (
                "HS256 with Paragon's public key PEM",
                TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(paragon_pem)).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "HS256 with Paragon's n bytes",
                TokenBuilder::new(Algorithm::HS256, EncodingKey::from_secret(&n_raw)).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "HS256 with the configured HS secret",
                TokenBuilder::fixture(Algorithm::HS256).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "PS256 by Paragon's key",
                TokenBuilder::new(Algorithm::PS256, rsa_key(&f.paragon_rsa)).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "alg none",
                TokenBuilder::with_header_alg("none", Sig::Text(String::new())).build(),
                Err(AuthError::AlgorithmNotAllowed),
            ),
            (
                "expired",
                paragon_token()
                    .claim("exp", json!(unix_now() - 600))
                    .build(),
                Err(AuthError::Expired),
            ),
            (
                "exp missing",
                paragon_token().without("exp").build(),
                Err(AuthError::MissingExp),
            ),
        ],
    )
    .await;
}
