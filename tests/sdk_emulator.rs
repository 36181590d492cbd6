//! Paragon's own Connect SDK (the pinned npm bundle) in headless Chromium,
//! straight against the Paragon emulator, no credgate: proof that the
//! emulator speaks the SDK's protocol (contract §13, "The emulator"), from
//! signing in to connecting an account through the install flow's popup,
//! using it and disconnecting it. The same journey runs through credgate
//! elsewhere; here the emulator's request log shows exactly what the SDK
//! sends.

mod common;

use std::time::Duration;

use common::browser::{journey_page, standard_journey, SdkPage, RUN_TIMEOUT};
use common::*;
use credgate::emulator::fixtures::*;
use credgate::emulator::{self, EmulatorConfig, Fixtures, RecordedRequest};
use serde_json::{json, Value};

/// A Paragon user token for `user`, signed with the project key, as a
/// customer's backend mints it.
fn paragon_token(keys: &Keys, user: &str) -> String {
    let now = credgate::auth::unix_now();
    let claims = json!({
        "sub": user,
        "aud": format!("useparagon.com/{PROJECT}"),
        "iat": now,
        "exp": now + 3600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.paragon.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// `(id, externalId)` of each `integration` account in a `getUser()` value.
fn accounts(user: &Value, integration: &str) -> Vec<(String, Value)> {
    user["integrations"][integration]["allCredentials"]
        .as_array()
        .unwrap_or_else(|| panic!("no {integration} in {user}"))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["externalId"].clone(),
            )
        })
        .collect()
}

/// One line per recorded request, for failure messages.
fn summary(log: &[RecordedRequest]) -> String {
    log.iter()
        .map(|r| {
            format!(
                "{} {} -> {} (credential header {:?})",
                r.method,
                r.path,
                r.status,
                r.header("x-paragon-credential")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of query parameter `name` of a recorded request, decoded.
fn param(r: &RecordedRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(r.query.as_deref()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sdk_connects_uses_and_disconnects_an_account_on_the_emulator() {
    let keys = Keys::new();
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .expect("the emulator starts");
    let token = paragon_token(&keys, "acme");
    let page = SdkPage::start().await;
    let steps = standard_journey(
        &token,
        "salesforce",
        "/services/data/v59.0/sobjects/Account",
        "alice/2",
    );
    let html = journey_page(&emu.url(), PROJECT, &steps, Duration::from_secs(30));
    let result = page.run(html, RUN_TIMEOUT).await;
    assert_eq!(result["origin"], page.origin());
    let log = emu.state.requests();
    let traffic = summary(&log);
    let done = result["steps"].as_array().expect("the journey ran");
    let names: Vec<&str> = done.iter().map(|s| s["do"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "authenticate",
            "getUser",
            "request",
            "installIntegration",
            "getUser",
            "uninstallIntegration",
            "getUser"
        ]
    );
    for s in done {
        assert_eq!(s["ok"], true, "{s}\n{traffic}\n{:?}", page.logs());
        assert_eq!(s["authenticated"], true, "the SDK kept its user: {s}");
    }

    // Signed in: the accounts of acme as /sdk/me lists them.
    let before = accounts(&done[1]["value"], "salesforce");
    assert_eq!(
        before,
        vec![
            (DEMO_SALESFORCE_ALICE.to_string(), json!("alice")),
            (DEMO_SALESFORCE_BOB.to_string(), json!("bob")),
        ]
    );
    // The Proxy API reached the provider with the primary account.
    let echo = &done[2]["value"];
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("GET"), Some("/services/data/v59.0/sobjects/Account")),
        "{echo}"
    );
    // Connected: a new VALID account labelled as asked.
    let installed = &done[3]["value"];
    let new_id = installed["credentialId"].as_str().unwrap().to_string();
    assert!(
        credgate::paragon::credentials::is_uuid(&new_id),
        "{installed}"
    );
    assert_eq!(installed["integrationType"], "salesforce");
    assert_eq!(
        (
            installed["credential"]["externalId"].clone(),
            installed["credential"]["status"].clone()
        ),
        (json!("alice/2"), json!("VALID"))
    );
    let mut expected = before.clone();
    expected.push((new_id.clone(), json!("alice/2")));
    assert_eq!(accounts(&done[4]["value"], "salesforce"), expected);
    // Disconnected again, in the SDK and in the emulator.
    assert_eq!(accounts(&done[6]["value"], "salesforce"), before);
    assert_eq!(emu.state.credential_owner(&new_id), None);

    // What reached "Paragon". Preflights (the SDK's fetches send
    // Authorization) were answered and recorded without a user.
    let preflights: Vec<&RecordedRequest> = log.iter().filter(|r| r.method == "OPTIONS").collect();
    assert!(!preflights.is_empty(), "{traffic}");
    assert!(
        preflights
            .iter()
            .all(|r| r.status == 204 && r.user.is_none()),
        "{traffic}"
    );
    let sent: Vec<&RecordedRequest> = log.iter().filter(|r| r.method != "OPTIONS").collect();
    // The first request of `method` whose path ends with `suffix` (or,
    // for a suffix ending in `/`, holds it).
    let find = |method: &str, suffix: &str| -> usize {
        sent.iter()
            .position(|r| {
                r.method == method
                    && (r.path.ends_with(suffix)
                        || suffix.ends_with('/') && r.path.contains(suffix))
            })
            .unwrap_or_else(|| panic!("no {method} …{suffix}:\n{traffic}"))
    };
    let proxy = sent[find(
        "GET",
        "/sdk/proxy/salesforce/services/data/v59.0/sobjects/Account",
    )];
    assert_eq!(proxy.credential.as_deref(), Some(DEMO_SALESFORCE_ALICE));

    // The popup's first page: the token only in its (unencoded) query.
    let nonce = find("GET", "/sdk/actions/oauth-nonce");
    let r = sent[nonce];
    assert!(
        r.header("authorization").is_none(),
        "a navigation: no header"
    );
    assert_eq!(param(r, "userToken").as_deref(), Some(token.as_str()));
    assert!(r
        .query
        .as_deref()
        .unwrap()
        .contains(&format!("originForPostMessage={}&", page.origin())));
    assert_eq!((r.user.as_deref(), r.status), (Some("acme"), 200));

    // build-oauth: the token twice (header and query), the session id and
    // the install options; not one of the SDK's own requests (no version
    // header).
    let build = find("GET", "/sdk/actions/build-oauth");
    let r = sent[build];
    assert_eq!(
        r.path,
        format!("/v2/projects/{PROJECT}/sdk/actions/build-oauth")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(param(r, "userToken").as_deref(), Some(token.as_str()));
    assert!(r.header("x-paragon-sdk-version").is_none());
    assert!(r.header("x-paragon-credential").is_none());
    assert_eq!(
        param(r, "integrationId").as_deref(),
        Some(DEMO_INTEGRATION_SALESFORCE)
    );
    let options: Value = serde_json::from_str(&param(r, "installOptions").unwrap()).unwrap();
    assert_eq!(
        (
            options["externalId"].clone(),
            options["allowMultipleCredentials"].clone()
        ),
        (json!("alice/2"), json!(true)),
        "{options}"
    );
    let session = param(r, "oauthMetaKeyId").expect("the SDK's session id");
    assert!(
        !session.is_empty() && session.chars().all(|c| c.is_ascii_alphanumeric()),
        "the SDK's random base-36 id: {session}"
    );

    // The consent page, then its form post, created the credential.
    let consent_get = find("GET", "/emulator/consent/");
    let consent_post = find("POST", "/emulator/consent/");
    assert_eq!(
        sent[consent_post].credential.as_deref(),
        Some(new_id.as_str())
    );
    assert_eq!(sent[consent_get].path, sent[consent_post].path);

    // The SDK polled its session, read the credential, deleted the session.
    let poll = find("GET", &format!("/sdk/actions/session-id/{session}"));
    let read = find("GET", &format!("/sdk/credentials/{new_id}"));
    let forget = find("DELETE", &format!("/sdk/actions/session-id/{session}"));
    let uninstall = find(
        "DELETE",
        &format!("/sdk/integrations/{DEMO_INTEGRATION_SALESFORCE}"),
    );
    assert!(
        nonce < consent_get
            && build < consent_get
            && consent_get < consent_post
            && consent_post < poll
            && poll < read
            && read < forget
            && forget < uninstall,
        "the install flow's order:\n{traffic}"
    );
    // Mid-install the SDK names its current account on these requests
    // (contract §13), the new one once it knows it.
    assert_eq!(
        sent[read].header("x-paragon-credential"),
        Some(DEMO_SALESFORCE_ALICE),
        "{traffic}"
    );
    assert_eq!(
        sent[forget].header("x-paragon-credential"),
        Some(new_id.as_str())
    );
    let r = sent[uninstall];
    assert_eq!(
        (
            r.header("x-paragon-credential"),
            r.credential.as_deref(),
            r.status
        ),
        (Some(new_id.as_str()), Some(new_id.as_str()), 200)
    );
    // Every request the SDK makes itself says its version and succeeded.
    for r in &sent {
        let own = !(r.path.contains("/emulator/consent/")
            || r.path.ends_with("/build-oauth")
            || r.path.ends_with("/oauth-nonce"));
        if own {
            assert_eq!(
                r.header("x-paragon-sdk-version"),
                Some("2.4.0"),
                "{}",
                r.path
            );
        }
        assert_eq!(r.status, 200, "{}\n{traffic}", r.path);
    }
}
