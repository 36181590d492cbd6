//! Policy rules and rate limits (contract §5b, §5c) against the Paragon
//! emulator: every example of `config/rules.example.toml` end to end
//! (allowed and refused, and what reached Paragon), deny rules beating
//! every grant and admins, fail-closed evaluation errors, shadow rules,
//! `[limits]`, a reload with a broken rule, and `/admin/decide` naming the
//! rules that matched.
//!
//! The world: the routing suite's Connected User `acme` plus a shared
//! NetSuite account (`externalId = "shared-netsuite"`, nobody's label) and
//! alice's HubSpot account, the one the example file freezes.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::time::Duration;

use common::*;
use harness::*;
use serde_json::{json, Value};

const NETSUITE: &str = "4e750000-5a1e-4000-8000-000000000001";
/// The id `frozen-credential` names in the example file.
const FROZEN: &str = "f0f0f0f0-0000-4000-8000-000000000001";
const EXAMPLES: &str = include_str!("../config/rules.example.toml");
const NO_SF_DELETE: &str = "no-salesforce-proxy-delete";

fn world() -> credgate::emulator::Fixtures {
    let mut f = fixtures();
    f.users[0]
        .credentials
        .push(owned(NETSUITE, "netsuite", "shared-netsuite"));
    f.users[0]
        .credentials
        .push(owned(FROZEN, "hubspot", "alice"));
    f
}

/// The gateway with `rules` as its rules file, and `extra` policy lines.
async fn env_with(rules: &str, extra: &str, top: &str) -> (Env, TempDir) {
    let dir = TempDir::new("rules");
    let file = dir.write("rules.toml", rules);
    let policy = format!(
        "rules_file = \"{}\"\ncredentials_claim = \"creds\"\n{extra}",
        file.display()
    );
    let top = top.to_string();
    let env = Env::with(world(), move |mut b| {
        b.extra_top = top;
        b.policy(&policy)
    })
    .await;
    (env, dir)
}

fn token(env: &Env, principal: &str, extra: Value) -> String {
    let mut claims = json!({"sub": "acme", "principal": principal});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    env.keys.caller_token(claims)
}

async fn record_of(env: &Env, got: &Got) -> Value {
    let id = rid(got);
    wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await
}

/// Asserts the refusal and that its record names `rule`.
async fn refused_by(env: &Env, got: &Got, status: u16, code: &str, rule: &str) {
    env.assert_refused(got, status, code);
    let r = record_of(env, got).await;
    assert_eq!(
        (
            r["decision"].as_str(),
            r["reason"].as_str(),
            r["rule"].as_str()
        ),
        (Some("refused"), Some("rule"), Some(rule)),
        "{r}"
    );
    // The answer never names the rule.
    let body = String::from_utf8_lossy(&got.body);
    assert!(!body.contains(rule), "{body}");
}

#[tokio::test]
async fn the_finance_rule_permits_the_shared_account_read_only() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let erin = token(&env, "erin", json!({"groups": ["finance"]}));
    let path = p("/sdk/proxy/netsuite/records");
    let got = env.send_as("GET", &path, &erin, NETSUITE, "").await;
    env.assert_routed(&got, NETSUITE, Place::Header);
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["reason"].as_str(), r["rule"].as_str()),
        (Some("rule"), Some("finance-shared-netsuite-read")),
        "{r}"
    );
    // Named none: the one permitted NetSuite account is the default.
    let got = env.send("GET", &path, &erin, &[], "").await;
    env.assert_routed(&got, NETSUITE, Place::Header);
    // Read-only: a write is not permitted by the rule, and nothing else
    // grants it.
    let got = env.send_as("POST", &path, &erin, NETSUITE, "{}").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(record_of(&env, &got).await["reason"], "no_grant");
    // Outside the group, or without the claim (an evaluation error: an
    // allow rule does not match), the account is not erin's.
    for t in [
        token(&env, "erin", json!({"groups": ["sales"]})),
        token(&env, "erin", json!({})),
        token(&env, "erin", json!({"groups": "finance"})),
    ] {
        let got = env.send_as("GET", &path, &t, NETSUITE, "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    // The rule adds to the grants: erin's own grants still work the same.
    let alice = env.member("alice");
    let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    assert_eq!(record_of(&env, &got).await["reason"], "owner_label");
}

fn sf() -> String {
    p("/sdk/proxy/salesforce/sobjects/Account/1")
}

#[tokio::test]
async fn deny_rules_beat_every_grant_and_admins() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let alice = env.member("alice");
    // alice's own Salesforce account (owner label), and an admin naming it.
    for t in [alice.clone(), env.admin()] {
        let got = env.send_as("DELETE", &sf(), &t, SF_ALICE, "").await;
        refused_by(&env, &got, 403, "credential_forbidden", NO_SF_DELETE).await;
    }
    // A token claim granting it does not help either.
    let frank = token(&env, "frank", json!({"creds": [SF_ALICE]}));
    let got = env.send_as("GET", &sf(), &frank, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    let got = env.send_as("DELETE", &sf(), &frank, SF_ALICE, "").await;
    refused_by(&env, &got, 403, "credential_forbidden", NO_SF_DELETE).await;
    // Reads, and deletes elsewhere, are not the rule's.
    let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    let slack = p("/sdk/proxy/slack/chat.delete");
    let got = env
        .send_as("DELETE", &slack, &alice, SLACK_ALICE_1, "")
        .await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    let m = env.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            "credgate_rule_matches_total{rule=\"no-salesforce-proxy-delete\",effect=\"deny\"}"
        ),
        3.0,
        "{m}"
    );
}

#[tokio::test]
async fn contractors_may_not_use_managed_sync() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_BOB}"}}"#);
    let contractor = token(&env, "bob", json!({"groups": ["contractor"]}));
    let got = env
        .send("POST", "/api/syncs", &contractor, &[], body.clone())
        .await;
    refused_by(
        &env,
        &got,
        403,
        "credential_forbidden",
        "contractors-no-sync",
    )
    .await;
    // Listing syncs routes no credential: operation_forbidden.
    let got = env.send("GET", "/api/syncs", &contractor, &[], "").await;
    refused_by(
        &env,
        &got,
        403,
        "operation_forbidden",
        "contractors-no-sync",
    )
    .await;
    // The same member as an employee syncs; the contractor uses the Proxy API.
    let bob = token(&env, "bob", json!({"groups": ["staff"]}));
    let got = env.send("POST", "/api/syncs", &bob, &[], body).await;
    env.assert_routed(&got, SF_BOB, Place::Body);
    let got = env.send_as("GET", &sf(), &contractor, SF_BOB, "").await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    // `groups` of the wrong type: the deny rule errors, and an erroring
    // deny rule refuses (fail closed).
    let odd = token(&env, "bob", json!({"groups": "contractor"}));
    let got = env.send("GET", "/api/syncs", &odd, &[], "").await;
    refused_by(
        &env,
        &got,
        403,
        "operation_forbidden",
        "contractors-no-sync",
    )
    .await;
}

#[tokio::test]
async fn a_frozen_credential_is_refused_to_everyone_and_left_out_of_member_lists() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let alice = env.member("alice");
    let hubspot = p("/sdk/proxy/hubspot/contacts");
    for t in [alice.clone(), env.admin()] {
        let got = env.send_as("GET", &hubspot, &t, FROZEN, "").await;
        refused_by(&env, &got, 403, "credential_forbidden", "frozen-credential").await;
    }
    // alice naming none: her one HubSpot account is the default, and frozen.
    let got = env.send("GET", &hubspot, &alice, &[], "").await;
    refused_by(&env, &got, 403, "credential_forbidden", "frozen-credential").await;
    // A listing uses no credential: it is not refused, and a member is
    // shown only what it can use, so not the frozen account (an admin's
    // answer is untouched).
    let got = env.send("GET", &p("/sdk/me"), &alice, &[], "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert!(!String::from_utf8_lossy(&got.body).contains(FROZEN));
    assert!(String::from_utf8_lossy(&got.body).contains(SF_ALICE));
    let got = env.send("GET", &p("/sdk/me"), &env.admin(), &[], "").await;
    assert!(String::from_utf8_lossy(&got.body).contains(FROZEN));
    // An admin naming none leaves the pick to Paragon: a rule about the
    // credential cannot be judged, so it refuses (fail closed).
    let got = env.send("GET", &hubspot, &env.admin(), &[], "").await;
    refused_by(&env, &got, 403, "credential_forbidden", "frozen-credential").await;
    // Other credentials are untouched.
    let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
}

#[tokio::test]
async fn the_delete_limit_counts_per_member() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let alice = env.member("alice");
    let slack = p("/sdk/proxy/slack/chat.delete");
    for _ in 0..2 {
        let got = env
            .send_as("DELETE", &slack, &alice, SLACK_ALICE_1, "")
            .await;
        env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    }
    let got = env
        .send_as("DELETE", &slack, &alice, SLACK_ALICE_1, "")
        .await;
    env.assert_refused(&got, 429, "rate_limited");
    let retry: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["reason"].as_str(), r["rule"].as_str()),
        (Some("rate_limited"), Some("slow-deletes")),
        "{r}"
    );
    // Reads are not counted; bob has his own bucket.
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_1, "").await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    let bob = env.member("bob");
    let got = env.send_as("DELETE", &slack, &bob, SLACK_BOB, "").await;
    env.assert_routed(&got, SLACK_BOB, Place::Header);
    let m = env.metrics_text().await;
    assert_eq!(
        metric(&m, "credgate_rate_limited_total{scope=\"rule\"}"),
        1.0
    );
}

#[tokio::test]
async fn shadow_rules_are_recorded_and_change_nothing() {
    let rules = r#"
[[rule]]
name = "try-no-slack"
effect = "deny"
mode = "shadow"
when = "credential.integration == 'slack'"

[[rule]]
name = "try-netsuite-for-all"
effect = "allow"
mode = "shadow"
when = "credential.integration == 'netsuite'"
"#;
    let (env, _d) = env_with(rules, "", "").await;
    let alice = env.member("alice");
    let slack = p("/sdk/proxy/slack/chat.postMessage");
    let got = env
        .send_as("POST", &slack, &alice, SLACK_ALICE_1, "{}")
        .await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    let r = record_of(&env, &got).await;
    assert_eq!(
        (
            r["decision"].as_str(),
            r["reason"].as_str(),
            r["code"].as_str(),
            r["rule"].as_str(),
            r["shadow_rules"].as_str()
        ),
        (
            Some("shadow_refused"),
            Some("rule"),
            Some("credential_forbidden"),
            Some("try-no-slack"),
            Some("try-no-slack")
        ),
        "{r}"
    );
    // A shadow allow rule permits nothing, and says it would have.
    let got = env
        .send_as("GET", &p("/sdk/proxy/netsuite/x"), &alice, NETSUITE, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let r = record_of(&env, &got).await;
    assert_eq!(r["reason"], "no_grant", "{r}");
    // Other requests carry no shadow mark.
    let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    let r = record_of(&env, &got).await;
    assert_eq!(r["decision"], "allowed", "{r}");
    assert!(r.get("shadow_rules").is_none(), "{r}");
}

#[tokio::test]
async fn decide_names_the_rules_and_how_they_came_out() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let erin = token(&env, "erin", json!({"groups": ["finance"]}));
    let ask = |method: &str, token: &str, cred: &str| {
        json!({"token": token, "method": method, "path": p("/sdk/proxy/netsuite/x"),
               "headers": {"x-paragon-credential": cred}})
    };
    let answer = env
        .admin_post("/admin/decide", ask("GET", &erin, NETSUITE))
        .await
        .1;
    assert_eq!(answer["decision"], "allowed", "{answer}");
    assert_eq!(answer["rule"], "finance-shared-netsuite-read", "{answer}");
    let rules = answer["rules"].as_array().expect("rules listed");
    assert_eq!(rules.len(), 5, "{answer}");
    let of = |name: &str| rules.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(of("finance-shared-netsuite-read")["outcome"], "matched");
    assert_eq!(of("frozen-credential")["outcome"], "not_matched");
    assert_eq!(of("slow-deletes")["effect"], "limit");
    // Refused before the rules (a write): the rules are still shown.
    let answer = env
        .admin_post("/admin/decide", ask("POST", &erin, NETSUITE))
        .await
        .1;
    assert_eq!(answer["reason"], "no_grant", "{answer}");
    let rules = answer["rules"].as_array().expect("rules listed");
    let finance = rules
        .iter()
        .find(|r| r["name"] == "finance-shared-netsuite-read")
        .unwrap();
    assert_eq!(finance["outcome"], "not_matched", "{answer}");
    // An erroring rule is shown with its error.
    let odd = token(&env, "erin", json!({"groups": 7}));
    let answer = env
        .admin_post("/admin/decide", ask("GET", &odd, NETSUITE))
        .await
        .1;
    let rules = answer["rules"].as_array().unwrap();
    let finance = rules
        .iter()
        .find(|r| r["name"] == "finance-shared-netsuite-read")
        .unwrap();
    assert_eq!(
        (
            finance["outcome"].as_str(),
            finance["takes_effect"].as_bool()
        ),
        (Some("error"), Some(false)),
        "{answer}"
    );
    assert!(finance["error"].as_str().is_some_and(|e| !e.is_empty()));
    // Nothing of this reached Paragon.
    assert!(env.traffic().is_empty(), "{:#?}", env.traffic());
}

#[tokio::test]
async fn principal_and_user_limits_answer_429_with_retry_after() {
    let top =
        "[limits]\nprincipal_rps = 0.25\nprincipal_burst = 2\nuser_rps = 0.5\nuser_burst = 3\n";
    let (env, _d) = env_with("", "", top).await;
    let alice = env.member("alice");
    for _ in 0..2 {
        let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
        env.assert_routed(&got, SF_ALICE, Place::Header);
    }
    let got = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_refused(&got, 429, "rate_limited");
    let retry: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry), "{retry}");
    assert_eq!(record_of(&env, &got).await["reason"], "rate_limited");
    // bob has his own principal bucket, but shares acme's: one more
    // request fills the user's burst of 3.
    let bob = env.member("bob");
    let got = env.send_as("GET", &sf(), &bob, SF_BOB, "").await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    let got = env.send_as("GET", &sf(), &bob, SF_BOB, "").await;
    env.assert_refused(&got, 429, "rate_limited");
    let m = env.metrics_text().await;
    assert_eq!(
        metric(&m, "credgate_rate_limited_total{scope=\"principal\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "credgate_rate_limited_total{scope=\"user\"}"),
        1.0
    );
    // An unauthenticated request is refused before any bucket.
    let got = env.send("GET", &sf(), "not-a-token", &[], "").await;
    assert_eq!(got.status, 401);
}

/// contract §5c: buckets are keyed by principal, never by token. alice's
/// first token is used, then left idle past the limiter's own idle window
/// (a whole refill and a second) while it still holds her bucket; two
/// fresh tokens of hers (another `jti` and `iat`, so other tokens) then
/// drain that one bucket with it: the burst is spent in total, and every
/// token of hers is refused.
#[tokio::test]
async fn a_principals_tokens_share_one_bucket() {
    let top = "[limits]\nprincipal_rps = 1\nprincipal_burst = 2\n";
    let (env, _d) = env_with("", "", top).await;
    let now = credgate::auth::unix_now();
    let tokens: Vec<String> = (0..3u64)
        .map(|i| {
            token(
                &env,
                "alice",
                json!({"jti": format!("alice-{i}"), "iat": now - i}),
            )
        })
        .collect();
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2]);
    let got = env.send_as("GET", &sf(), &tokens[0], SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    // Past the limiter's idle window (burst / rps + 1 s): the first
    // token's bucket is full again, and still its.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for t in &tokens[..2] {
        let got = env.send_as("GET", &sf(), t, SF_ALICE, "").await;
        env.assert_routed(&got, SF_ALICE, Place::Header);
    }
    for t in [&tokens[2], &tokens[0], &tokens[1]] {
        let got = env.send_as("GET", &sf(), t, SF_ALICE, "").await;
        env.assert_refused(&got, 429, "rate_limited");
    }
    // bob's bucket is his own.
    let got = env
        .send_as("GET", &sf(), &env.member("bob"), SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
}

#[tokio::test]
async fn a_reload_with_a_broken_rule_keeps_the_old_rules() {
    let keys = Keys::new();
    let emu = credgate::emulator::spawn(credgate::emulator::EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: world(),
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .unwrap();
    let rules_path = keys.dir.write(
        "rules.toml",
        "[[rule]]\nname = \"no-gets\"\neffect = \"deny\"\nwhen = \"request.method == 'GET'\"\n",
    );
    let builder = ConfigBuilder::new(&keys, Hosts::all(&emu.url()))
        .policy(&format!("rules_file = \"{}\"", rules_path.display()));
    let path = keys.dir.write("credgate.toml", &builder.toml());
    let bin = Binary::serve(&path, &[]);
    let cl = client();
    let alice = keys.member("acme", "alice");
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
    let status = |got: &Got| got.status.as_u16();
    let send = |method: &'static str| {
        let url = url.clone();
        let cl = cl.clone();
        let alice = alice.clone();
        async move {
            let mut r = http::Request::builder()
                .method(method)
                .uri(url)
                .header("authorization", format!("Bearer {alice}"))
                .header("x-paragon-credential", SF_ALICE)
                .body(credgate::net::body::empty())
                .unwrap();
            r.headers_mut().insert("accept", "*/*".parse().unwrap());
            send(&cl, r).await
        }
    };
    assert_eq!(status(&send("GET").await), 403);
    assert_eq!(status(&send("POST").await), 200);
    // Writes the rules file as one deny rule and reloads; waits for `log`.
    let reload = |name: &str, when: &str, log: &'static str| {
        keys.dir.write(
            "rules.toml",
            &format!("[[rule]]\nname = \"{name}\"\neffect = \"deny\"\nwhen = \"{when}\"\n"),
        );
        bin.signal("HUP");
        bin.wait_for_log(log)
    };
    // Broken: a field that does not exist. Logged, and the old rule serves.
    reload(
        "no-posts",
        "request.methd == 'POST'",
        "the new config is invalid",
    )
    .await;
    assert!(
        bin.log_text()
            .contains("rule `no-posts` (line 4): `when` 1:8"),
        "{}",
        bin.log_text()
    );
    assert_eq!(status(&send("GET").await), 403);
    assert_eq!(status(&send("POST").await), 200);
    // Fixed: the new rule replaces the old.
    reload("no-posts", "request.method == 'POST'", "config reloaded").await;
    assert_eq!(status(&send("GET").await), 200);
    assert_eq!(status(&send("POST").await), 403);
    drop(bin);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn the_access_review_shows_what_rules_say_of_each_account() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let (status, a) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(status, 200, "{a}");
    let entries = |id: &str| -> Vec<Value> {
        a["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {a}"))["access"]
            .as_array()
            .unwrap()
            .clone()
    };
    let rules_of = |id: &str| -> Vec<(String, String)> {
        entries(id)
            .iter()
            .filter(|e| e["rule"].is_string())
            .map(|e| {
                (
                    e["grant"].as_str().unwrap().to_string(),
                    e["rule"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Frozen: refused to everyone, whatever the caller.
    assert_eq!(
        rules_of(FROZEN),
        vec![("deny_rule".to_string(), "frozen-credential".to_string())]
    );
    let frozen = entries(FROZEN);
    let e = frozen.iter().find(|e| e["grant"] == "deny_rule").unwrap();
    assert_eq!(e["enumerable"], true, "{e}");
    assert!(
        e["who"]
            .as_str()
            .unwrap()
            .contains("nobody, admins included"),
        "{e}"
    );
    // NetSuite: the finance rule may permit it, depending on the caller.
    let ns = entries(NETSUITE);
    let e = ns
        .iter()
        .find(|e| e["grant"] == "rule")
        .expect("the allow rule");
    assert_eq!(
        (e["rule"].as_str(), e["enumerable"].as_bool()),
        (Some("finance-shared-netsuite-read"), Some(false)),
        "{e}"
    );
    // Rules that cannot apply to an account are not listed on it; the
    // ones that read no credential are listed once, with the file's text.
    assert!(rules_of(SF_ALICE).is_empty(), "{:?}", rules_of(SF_ALICE));
    let names: Vec<&str> = a["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(a["rules"][1]["when"].as_str().unwrap().contains("DELETE"));
}

/// `credgate explain` names the deciding rule and lists every rule's outcome.
#[tokio::test]
async fn explain_prints_the_rules() {
    let (env, _d) = env_with(EXAMPLES, "", "").await;
    let alice = env.member("alice");
    let header = format!("X-Paragon-Credential: {FROZEN}");
    let text = env
        .explain(&alice, &p("/sdk/proxy/hubspot/contacts"), &header)
        .await;
    assert!(
        text.contains("reason       rule (rule frozen-credential)"),
        "{text}"
    );
    assert!(
        text.contains("rules        finance-shared-netsuite-read not_matched (allow, enforce)"),
        "{text}"
    );
    assert!(
        text.contains("frozen-credential matched (deny, enforce), takes effect"),
        "{text}"
    );
}
