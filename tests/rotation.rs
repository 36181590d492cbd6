//! Key rotation by reload (contract §4): a change of the identity provider's key
//! flushes the verified-token cache, a change of `paragon.signing_key_file`
//! flushes the minted-token cache, and a reload that changes no key keeps
//! accepting the tokens it accepted.

mod common;

use std::sync::Arc;

use common::*;
use credgate::keygen::PemPair;
use http::StatusCode;
use serde_json::{json, Value};

async fn paragon() -> Recorder {
    spawn_recorder(Arc::new(|_r: Recorded| {
        Box::pin(async move { json_response(StatusCode::OK, json!({"ok": true})) })
    }))
    .await
}

/// An RS256 caller token signed with `pair`'s private key.
fn token_signed_by(pair: &PemPair, claims: Value) -> String {
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(credgate::auth::unix_now() + 3600);
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// Verifies an upstream `Authorization` value with `public_pem`.
fn verifies_with(authorization: &str, public_pem: &str) -> Result<Value, String> {
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("a bearer token");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[format!("useparagon.com/{PROJECT}")]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn integrations(gw: &credgate::app::Running) -> String {
    format!("http://{}/projects/{PROJECT}/sdk/integrations", gw.addr)
}

/// The `Authorization` header of the last request Paragon received.
fn last_upstream_authorization(p: &Recorder) -> String {
    p.requests()
        .last()
        .expect("a request reached Paragon")
        .headers
        .get("authorization")
        .expect("an upstream Authorization header")
        .to_str()
        .unwrap()
        .to_string()
}

/// Replacing the IdP public key file and reloading: a token signed with the
/// old key, verified and cached before, is now 401 (not served from the
/// verified-token cache); a token signed with the new key is 200.
#[tokio::test]
async fn a_reload_with_a_new_identity_key_stops_accepting_cached_tokens_of_the_old_one() {
    let keys = Keys::new();
    let p = paragon().await;
    let builder = ConfigBuilder::new(&keys, Hosts::all(&p.url()));
    let gw = builder.start().await;
    let cl = client();
    let metrics = gw.state.metrics.clone();

    let old_token = keys.admin("acme");
    assert_eq!(
        get(&cl, &integrations(&gw), Some(&old_token)).await.status,
        200
    );
    // A second request is a verified-token cache hit: T is cached.
    let hits = metrics.verified_token_cache_hits.get();
    assert_eq!(
        get(&cl, &integrations(&gw), Some(&old_token)).await.status,
        200
    );
    assert_eq!(
        metrics.verified_token_cache_hits.get(),
        hits + 1,
        "the old token is in the verified-token cache before the rotation"
    );

    // Rotate the identity provider's key: B replaces A on disk, then reload.
    let new_idp = credgate::keygen::rsa().unwrap();
    keys.dir.write("idp.pub.pem", &new_idp.public_pem);
    gw.reload(builder.build()).expect("reload accepted");

    let forwarded = p.requests().len();
    let got = get(&cl, &integrations(&gw), Some(&old_token)).await;
    assert_eq!(
        got.status,
        401,
        "a token signed with the removed key must not be served from the cache: {:?}",
        String::from_utf8_lossy(&got.body)
    );
    assert_eq!(
        p.requests().len(),
        forwarded,
        "nothing is forwarded for the old token"
    );

    let new_token = token_signed_by(
        &new_idp,
        json!({"sub": "acme", "principal": "admin", "role": "admin"}),
    );
    assert_eq!(
        get(&cl, &integrations(&gw), Some(&new_token)).await.status,
        200
    );
    // And the old token stays refused (not re-cached by some other path).
    assert_eq!(
        get(&cl, &integrations(&gw), Some(&old_token)).await.status,
        401
    );
    gw.shutdown().await;
}

/// Replacing `paragon.signing_key_file` and reloading: the same caller's next
/// upstream token is minted with the new key (verifies with the new public
/// key, not the old), not reused from the minted-token cache or the memo.
#[tokio::test]
async fn a_reload_with_a_new_paragon_signing_key_mints_with_the_new_key() {
    let keys = Keys::new();
    let p = paragon().await;
    let builder = ConfigBuilder::new(&keys, Hosts::all(&p.url()));
    let gw = builder.start().await;
    let cl = client();
    let caller = keys.admin("acme");

    assert_eq!(
        get(&cl, &integrations(&gw), Some(&caller)).await.status,
        200
    );
    let before = last_upstream_authorization(&p);
    verifies_with(&before, &keys.paragon.public_pem).expect("minted with the old key");
    // The same caller again reuses the minted token: it is memoized/cached.
    assert_eq!(
        get(&cl, &integrations(&gw), Some(&caller)).await.status,
        200
    );
    assert_eq!(
        last_upstream_authorization(&p),
        before,
        "the minted token is reused before the rotation"
    );

    // Rotate Paragon's signing key on disk, then reload.
    let new_paragon = credgate::keygen::rsa().unwrap();
    keys.dir.write("paragon.pem", &new_paragon.private_pem);
    keys.dir.write("paragon.pub.pem", &new_paragon.public_pem);
    gw.reload(builder.build()).expect("reload accepted");

    assert_eq!(
        get(&cl, &integrations(&gw), Some(&caller)).await.status,
        200
    );
    let after = last_upstream_authorization(&p);
    assert_ne!(after, before, "a fresh upstream token after the rotation");
    let claims = verifies_with(&after, &new_paragon.public_pem)
        .expect("the upstream token verifies with the new Paragon public key");
    assert_eq!(claims["sub"], "acme");
    assert!(
        verifies_with(&after, &keys.paragon.public_pem).is_err(),
        "the upstream token must not verify with the old Paragon public key"
    );
    gw.shutdown().await;
}

/// Control: a reload that changes no key keeps accepting T (the 401 above is
/// due to the key change) and keeps minting with the same Paragon key.
#[tokio::test]
async fn a_reload_without_key_changes_keeps_accepting_the_token() {
    let keys = Keys::new();
    let p = paragon().await;
    let builder = ConfigBuilder::new(&keys, Hosts::all(&p.url()));
    let gw = builder.start().await;
    let cl = client();
    let caller = keys.admin("acme");

    assert_eq!(
        get(&cl, &integrations(&gw), Some(&caller)).await.status,
        200
    );
    gw.reload(builder.build()).expect("reload accepted");
    // A reload that also changes something unrelated to keys.
    let unrelated =
        ConfigBuilder::new(&keys, Hosts::all(&p.url())).server("upstream_timeout = \"6s\"");
    gw.reload(unrelated.build()).expect("reload accepted");

    assert_eq!(
        get(&cl, &integrations(&gw), Some(&caller)).await.status,
        200
    );
    let after = last_upstream_authorization(&p);
    verifies_with(&after, &keys.paragon.public_pem)
        .expect("still minted with the unchanged Paragon key");
    gw.shutdown().await;
}
