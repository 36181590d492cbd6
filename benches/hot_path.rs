//! Criterion benchmarks of the functions on credgate's request path.
//!
//!     cargo bench --bench hot_path
//!
//! The end-to-end load harness (credgate vs nginx, HAProxy, Envoy) is
//! `benches/load/run.sh`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use credgate::auth::{Authenticator, Identity};
use credgate::config::Config;
use credgate::gateway::headers;
use credgate::paragon::credentials::CredentialList;
use credgate::paragon::filter;
use credgate::paragon::jsonbody::TopObject;
use credgate::paragon::mint::{Minter, Scope};

/// An untrusted member, the common case on the hot path.
const MEMBER: headers::Sender<'static> = headers::Sender {
    trusted_proxy: false,
    member_allowed: Some(&[]),
    overwritten: &[],
};
use credgate::paragon::routes::classify;
use credgate::policy::{resolve_named, Permit, Requested, RouteIntegration};
use credgate::telemetry::Metrics;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

const PROJECT: &str = "11111111-2222-3333-4444-555555555555";

struct Fixture {
    dir: std::path::PathBuf,
    config: Config,
    rsa: credgate::keygen::PemPair,
    ec: credgate::keygen::PemPair,
    hs_secret: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "credgate-bench-{}",
        credgate::keygen::random_bytes::<4>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let paragon = credgate::keygen::rsa().unwrap();
    let rsa = credgate::keygen::rsa().unwrap();
    let ec = credgate::keygen::ecdsa(false).unwrap();
    std::fs::write(dir.join("paragon.pem"), &paragon.private_pem).unwrap();
    std::fs::write(dir.join("rsa.pub.pem"), &rsa.public_pem).unwrap();
    std::fs::write(dir.join("ec.pub.pem"), &ec.public_pem).unwrap();
    let hs_secret = "0123456789abcdef0123456789abcdef".to_string();
    let toml = format!(
        r#"
[paragon]
project_id = "{PROJECT}"
signing_key_file = "paragon.pem"
[auth]
algorithms = ["RS256", "ES256", "HS256"]
principal_claim = "principal"
[[auth.keys]]
algorithm = "RS256"
pem_file = "rsa.pub.pem"
[[auth.keys]]
algorithm = "ES256"
pem_file = "ec.pub.pem"
[[auth.keys]]
algorithm = "HS256"
secret_env = "HS"
[policy]
owner_external_id = "{{principal}}"
"#
    );
    let env: HashMap<String, String> = [("HS".to_string(), hs_secret.clone())].into();
    let config = Config::from_toml(&toml, &dir, &env).unwrap();
    Fixture {
        dir,
        config,
        rsa,
        ec,
        hs_secret,
    }
}

fn token(alg: jsonwebtoken::Algorithm, key: &jsonwebtoken::EncodingKey, principal: &str) -> String {
    let claims = json!({"sub": "acme", "principal": principal, "exp": credgate::auth::unix_now() + 3600, "iat": credgate::auth::unix_now()});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).unwrap()
}

fn list(n: usize) -> CredentialList {
    let creds: Vec<_> = (0..n)
        .map(|i| {
            json!({"id": format!("{i:08x}-0000-4000-8000-000000000000"), "integrationId": "aaaaaaaa-0000-4000-8000-000000000000",
                   "status": "VALID", "externalId": format!("member-{i}"), "configurations": [{"id": format!("{i:08x}-1111-4000-8000-000000000000")}]})
        })
        .collect();
    let body =
        json!({"authenticated": true, "integrations": {"salesforce": {"allCredentials": creds}}});
    CredentialList::parse(body.to_string().as_bytes()).unwrap()
}

fn member(principal: &str) -> Identity {
    Identity::new(
        "acme".into(),
        principal.into(),
        credgate::auth::Role::Member {
            claimed: Box::new([]),
        },
        u64::MAX,
        None,
    )
}

fn bench_routes(c: &mut Criterion) {
    let proxy = format!("/projects/{PROJECT}/sdk/proxy/salesforce/services/data/v59.0/query");
    let me = format!("/projects/{PROJECT}/sdk/me");
    c.bench_function("route/classify_proxy", |b| {
        b.iter(|| classify(black_box(&Method::GET), black_box(&proxy), PROJECT))
    });
    c.bench_function("route/classify_me", |b| {
        b.iter(|| classify(black_box(&Method::GET), black_box(&me), PROJECT))
    });
    c.bench_function("route/path_check_proxy", |b| {
        b.iter(|| credgate::gateway::path::check(black_box(&proxy)))
    });
}

fn bench_auth(c: &mut Criterion) {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = rt.block_on(async { Authenticator::new(&f.config, None, Metrics::new()).unwrap() });
    let rs = token(
        jsonwebtoken::Algorithm::RS256,
        &jsonwebtoken::EncodingKey::from_rsa_pem(f.rsa.private_pem.as_bytes()).unwrap(),
        "alice",
    );
    let es = token(
        jsonwebtoken::Algorithm::ES256,
        &jsonwebtoken::EncodingKey::from_ec_pem(f.ec.private_pem.as_bytes()).unwrap(),
        "alice",
    );
    let hs = token(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(f.hs_secret.as_bytes()),
        "alice",
    );
    let now = credgate::auth::unix_now();
    let mut g = c.benchmark_group("auth");
    for (name, t) in [("RS256", &rs), ("ES256", &es), ("HS256", &hs)] {
        g.bench_with_input(BenchmarkId::new("verify_uncached", name), t, |b, t| {
            b.iter(|| rt.block_on(auth.verify(black_box(t), now)).unwrap())
        });
    }
    rt.block_on(auth.authenticate_token(&rs)).unwrap();
    g.bench_function("cache_hit_RS256", |b| {
        b.iter(|| {
            rt.block_on(auth.authenticate_token(black_box(&rs)))
                .unwrap()
        })
    });
    g.finish();
}

fn bench_policy(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("policy/decide_named");
    for n in [1usize, 10, 100] {
        let l = list(n);
        let who = member(&format!("member-{}", n - 1));
        let target = Requested::Id(format!("{:08x}-0000-4000-8000-000000000000", n - 1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let permit = Permit::new(&who, &f.config.policy, None);
                resolve_named(
                    black_box(&l),
                    &permit,
                    RouteIntegration::Known("salesforce"),
                    black_box(&target),
                )
                .unwrap()
                .unwrap()
                .id
                .len()
            })
        });
    }
    g.finish();
    // The reason an allowed request records (contract §5a): computed once
    // per request, for the routed credential.
    let l = list(10);
    let who = member("member-9");
    let permit = Permit::new(&who, &f.config.policy, None);
    let routed = l.find("00000009-0000-4000-8000-000000000000").unwrap();
    c.bench_function("policy/reason_owner_label", |b| {
        b.iter(|| black_box(permit.why(black_box(routed))).map(|p| p.as_str()))
    });
}

fn bench_rewrite(c: &mut Criterion) {
    let mut incoming = HeaderMap::new();
    for (k, v) in [
        ("host", "gw.internal:8080"),
        ("user-agent", "backend/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("authorization", "Bearer xxxxxxxx.yyyyyyyyyyyy.zzzzzzzz"),
        (
            "x-paragon-credential",
            "00000000-0000-4000-8000-000000000000",
        ),
        ("x-request-id", "req-123"),
        ("connection", "keep-alive"),
    ] {
        incoming.insert(
            http::header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    c.bench_function("rewrite/credential_header", |b| {
        b.iter(|| {
            let mut h = incoming.clone();
            let _ = headers::single_value(&h, headers::X_PARAGON_CREDENTIAL);
            headers::scrub_request(&mut h, MEMBER);
            headers::set_forwarded(
                &mut h,
                &headers::client_ip_value("127.0.0.1".parse().unwrap()),
                "http",
                None,
            );
            h.insert(
                http::header::HeaderName::from_static(headers::X_PARAGON_CREDENTIAL),
                HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
            );
            black_box(h)
        })
    });
    let mut g = c.benchmark_group("rewrite/sync_body");
    for size in [1024usize, 64 * 1024] {
        let mut body = String::from(
            r#"{"integration":"salesforce","pipeline":"contacts","credentialId":"ext:alice","configuration":{"items":["#,
        );
        while body.len() < size - 40 {
            body.push_str(r#"{"k":"value","n":12.5},"#);
        }
        body.push_str(r#"{"k":"end"}]}}"#);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let t = TopObject::parse(black_box(body.as_bytes())).unwrap();
                black_box(t.with_string("credentialId", "00000000-0000-4000-8000-000000000000"))
            })
        });
    }
    g.finish();
}

fn bench_mint(c: &mut Criterion) {
    let f = fixture();
    let minter = Minter::new(&f.config.paragon, Metrics::new()).unwrap();
    let mut g = c.benchmark_group("mint");
    let mut n = 0u64;
    g.bench_function("uncached", |b| {
        b.iter(|| {
            n += 1;
            let user = format!("user-{n}");
            minter
                .authorization(
                    &user,
                    Scope::One {
                        integration: "slack",
                        id: "c1",
                    },
                )
                .unwrap()
        })
    });
    minter
        .authorization(
            "acme",
            Scope::One {
                integration: "slack",
                id: "c1",
            },
        )
        .unwrap();
    g.bench_function("cached", |b| {
        b.iter(|| {
            minter
                .authorization(
                    black_box("acme"),
                    Scope::One {
                        integration: "slack",
                        id: "c1",
                    },
                )
                .unwrap()
        })
    });
    g.finish();
}

fn bench_filter(c: &mut Criterion) {
    let l = list(20);
    let body = {
        let creds: Vec<_> = l
            .credentials
            .iter()
            .map(|c| json!({"id": &*c.id, "status": "VALID", "providerData": {"instanceURL": "https://x.my.salesforce.com"}, "externalId": c.external_id.as_deref()}))
            .collect();
        json!({"authenticated": true, "integrations": {"salesforce": {"enabled": true, "credentialId": &*l.credentials[0].id, "allCredentials": creds}}})
            .to_string()
    };
    let f = fixture();
    let who = member("member-7");
    c.bench_function("filter/sdk_me_20_credentials", |b| {
        b.iter(|| {
            let permit = Permit::new(&who, &f.config.policy, None);
            let mut v: serde_json::Value = serde_json::from_str(black_box(&body)).unwrap();
            filter::filter_me(
                &mut v,
                &|_, id| l.find(id).is_some_and(|c| permit.allows(c)),
                false,
            )
            .unwrap();
            serde_json::to_vec(&v).unwrap()
        })
    });
}

/// Authentication (cache hit) + policy decision + header rewrite + minted
/// token (cache hit): the CPU credgate adds per request on a warm cache.
fn bench_warm_path(c: &mut Criterion) {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = Metrics::new();
    let auth = rt.block_on(async { Authenticator::new(&f.config, None, metrics.clone()).unwrap() });
    let minter = Minter::new(&f.config.paragon, metrics).unwrap();
    let l = Arc::new(list(5));
    let tok = token(
        jsonwebtoken::Algorithm::RS256,
        &jsonwebtoken::EncodingKey::from_rsa_pem(f.rsa.private_pem.as_bytes()).unwrap(),
        "member-3",
    );
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {tok}")).unwrap(),
    );
    h.insert(
        "x-paragon-credential",
        HeaderValue::from_static("00000003-0000-4000-8000-000000000000"),
    );
    h.insert("host", HeaderValue::from_static("gw:8080"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/services/data/v59.0/query");
    rt.block_on(auth.authenticate(&h)).unwrap();
    c.bench_function("warm_path/auth_policy_rewrite_mint", |b| {
        b.iter(|| {
            rt.block_on(async {
                credgate::gateway::path::check(&path).unwrap();
                let id = auth.authenticate(black_box(&h)).await.unwrap();
                let route = classify(&Method::GET, &path, PROJECT).unwrap();
                let v = match headers::single_value(&h, headers::X_PARAGON_CREDENTIAL).unwrap() {
                    headers::Single::One(v) => v,
                    headers::Single::Absent => unreachable!(),
                };
                let requested = Requested::parse(v).unwrap();
                let permit = Permit::new(&id, &f.config.policy, None);
                let cred = resolve_named(
                    &l,
                    &permit,
                    RouteIntegration::Known("salesforce"),
                    &requested,
                )
                .unwrap()
                .unwrap();
                let authz = minter
                    .authorization(
                        &id.user,
                        Scope::One {
                            integration: &cred.integration,
                            id: &cred.id,
                        },
                    )
                    .unwrap();
                let mut out = h.clone();
                headers::scrub_request(&mut out, MEMBER);
                headers::set_forwarded(
                    &mut out,
                    &headers::client_ip_value("127.0.0.1".parse().unwrap()),
                    "http",
                    None,
                );
                out.insert(http::header::AUTHORIZATION, authz);
                black_box((route, out))
            })
        })
    });
}

/// Twenty rules of the kinds the examples show: request-only denies,
/// frozen credentials, claim-based allows, limits and shadow rules.
fn twenty_rules() -> String {
    let mut text = String::new();
    let mut rule = |name: String, effect: &str, extra: &str, when: String| {
        text.push_str(&format!(
            "[[rule]]\nname = \"{name}\"\neffect = \"{effect}\"\n{extra}when = {when:?}\n\n"
        ));
    };
    for i in 0..8 {
        rule(
            format!("deny-{i}"),
            "deny",
            "",
            format!("request.product == 'proxy' && request.method == 'DELETE' && request.integration == 'int{i}'"),
        );
    }
    for i in 0..4 {
        rule(
            format!("frozen-{i}"),
            "deny",
            "",
            format!("credential.id == 'f0f0f0f0-0000-4000-8000-00000000000{i}'"),
        );
    }
    for i in 0..4 {
        rule(
            format!("allow-{i}"),
            "allow",
            "",
            format!("has(caller.claims.groups) && 'g{i}' in caller.claims.groups && credential.integration == 'netsuite'"),
        );
    }
    for i in 0..2 {
        rule(
            format!("limit-{i}"),
            "limit",
            "rps = 100.0\n",
            format!("request.method == 'PUT{i}'"),
        );
    }
    for i in 0..2 {
        rule(
            format!("try-{i}"),
            "deny",
            "mode = \"shadow\"\n",
            format!("credential.externalId == 'nobody-{i}'"),
        );
    }
    text
}

fn bench_rules(c: &mut Criterion) {
    use credgate::config::rules::Rules;
    use credgate::policy::rules::{RequestFacts, RuleMemo, RuleView, Subject};
    let f = fixture();
    let l = list(10);
    let who = member("member-9");
    let target = Requested::Id("00000009-0000-4000-8000-000000000000".into());
    let rules = Arc::new(Rules::parse(&twenty_rules()).unwrap());
    assert_eq!(rules.rules.len(), 20);
    let memo = RuleMemo::default();
    let facts = || RequestFacts {
        product: "proxy",
        operation: "proxy",
        method: "GET",
        path: "/x".into(),
        proxy_host: "".into(),
        tool: "",
        side_effect: "",
        via: "",
        integration: std::sync::OnceLock::from(Box::<str>::from("salesforce")),
    };
    // A member's warm decision on a named credential, as the pipeline makes
    // it: without rules, and with twenty (their results memoized after the
    // first request: deny, shadow and limit rules judged in one walk).
    let mut g = c.benchmark_group("rules/warm_decision");
    g.bench_function("0", |b| {
        b.iter(|| {
            let permit = Permit::new(&who, &f.config.policy, None);
            let routed = resolve_named(&l, &permit, RouteIntegration::Known("salesforce"), &target);
            black_box(routed.unwrap().unwrap().id.len())
        })
    });
    g.bench_function("20", |b| {
        b.iter(|| {
            let facts = facts();
            let view = RuleView::new(&rules, &who, &facts, &memo);
            let permit = Permit::new(&who, &f.config.policy, Some(&view));
            let routed = resolve_named(&l, &permit, RouteIntegration::Known("salesforce"), &target)
                .unwrap()
                .unwrap();
            let s = Subject::Credential(routed);
            black_box(view.judge(s));
            black_box(routed.id.len())
        })
    });
    g.finish();
    // Every rule evaluated afresh (no memo): a caller's first request on a
    // kind of route, or `/admin/decide`.
    let facts = facts();
    let view = RuleView::new(&rules, &who, &facts, &memo);
    let routed = l.find("00000009-0000-4000-8000-000000000000").unwrap();
    c.bench_function("rules/uncached_20", |b| {
        b.iter(|| black_box(view.trace(Subject::Credential(routed))).len())
    });
}

/// `[limits]` right after authentication: with the caller's buckets held
/// (the warm path) and without (a new token: a keyed lookup).
fn bench_limits(c: &mut Criterion) {
    use credgate::config::rules::{Rate, Rules};
    use credgate::config::LimitsConfig;
    use credgate::policy::limits::{CallerBuckets, Limiter, Limits};
    let metrics = Metrics::new();
    let rate = Rate {
        rps: 1e6,
        burst: 1_000_000,
    };
    let limits = Limits::new(
        &LimitsConfig {
            principal: Some(rate),
            user: Some(rate),
        },
        &Rules::default(),
        None,
    );
    let who = member("member-1");
    let held = CallerBuckets::default();
    c.bench_function("limits/caller_held_buckets", |b| {
        b.iter(|| {
            limits
                .check_caller(black_box(&who), &held, &metrics)
                .is_ok()
        })
    });
    let limiter = Limiter::new(rate);
    c.bench_function("limits/keyed_lookup", |b| {
        b.iter(|| limiter.check(black_box("acme\0member-1")).is_ok())
    });
}

criterion_group!(
    benches,
    bench_routes,
    bench_auth,
    bench_policy,
    bench_rewrite,
    bench_mint,
    bench_filter,
    bench_warm_path,
    bench_rules,
    bench_limits
);
criterion_main!(benches);
