//! Paragon's own Connect SDK (the pinned npm bundle) in headless Chromium,
//! through credgate, against the Paragon emulator (contract §13): a member
//! signs in with her own token, sees exactly her accounts, uses hers,
//! reads credgate's refusal of a colleague's and stays signed in, connects
//! a new account through the install popup (labelled as hers, usable by her
//! at once and by nobody else), and disconnects one of hers. A page from an
//! origin not in `[cors]` gets nothing. Loopback only.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use common::browser::{journey_page, SdkPage, Step, RUN_TIMEOUT};
use common::*;
use credgate::emulator::fixtures::*;
use harness::*;
use serde_json::{json, Value};

async fn env_for(origin: &str) -> Env {
    let cors = format!("[cors]\nallowed_origins = [\"{origin}\"]\n");
    Env::with(fixtures(), move |mut b| {
        b.extra_top = cors;
        b
    })
    .await
}

/// `(id, externalId)` of every account of every integration in a
/// `getUser()` value.
fn accounts(user: &Value) -> BTreeSet<(String, String)> {
    user["integrations"]
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|i| i["allCredentials"].as_array().cloned().unwrap_or_default())
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_string(),
                        c["externalId"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn traffic_summary(env: &Env) -> String {
    env.traffic()
        .iter()
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_connects_uses_and_keeps_only_her_accounts_from_a_real_browser() {
    let page = SdkPage::start().await;
    let mut env = env_for(&page.origin()).await;
    let alice = env.member("alice");
    let steps = vec![
        Step::Authenticate {
            token: alice.clone(),
        },
        Step::GetUser,
        Step::Request {
            integration: "salesforce".into(),
            path: "/services/data/v59.0/sobjects/Account".into(),
            options: json!({"method": "GET", "selectedCredentialId": DEMO_SALESFORCE_ALICE}),
        },
        Step::Request {
            integration: "salesforce".into(),
            path: "/services/data/v59.0/sobjects/Account".into(),
            options: json!({"method": "GET", "selectedCredentialId": DEMO_SALESFORCE_BOB}),
        },
        Step::Install {
            integration: "salesforce".into(),
            options: json!({"allowMultipleCredentials": true}),
        },
        Step::GetUser,
        Step::Request {
            integration: "salesforce".into(),
            path: "/services/data/v59.0/sobjects/Contact".into(),
            options: json!({"method": "GET", "selectedCredentialId": "$installed"}),
        },
        Step::Uninstall {
            integration: "salesforce".into(),
            options: json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE}),
        },
        Step::GetUser,
    ];
    // Her accounts before the journey, as labelled.
    let hers: BTreeSet<(String, String)> = env
        .owned_by("alice")
        .iter()
        .map(|k| (k.id.clone(), k.owner.clone()))
        .collect();
    let html = journey_page(
        &format!("http://{}", env.gw.addr),
        PROJECT,
        &steps,
        Duration::from_secs(30),
    );
    let result = page.run(html, RUN_TIMEOUT).await;
    let done = result["steps"].as_array().unwrap_or_else(|| {
        panic!(
            "the journey ran: {result}\n{}\n{:?}",
            traffic_summary(&env),
            page.logs()
        )
    });
    let context = |env: &Env| format!("{result:#}\n{}\n{:?}", traffic_summary(env), page.logs());
    assert_eq!(done.len(), steps.len(), "{}", context(&env));
    for (i, s) in done.iter().enumerate() {
        // Bob's account is refused (step 3); every other step succeeds, and
        // the SDK keeps its member signed in throughout.
        assert_eq!(s["ok"], i != 3, "step {i}: {s}\n{}", context(&env));
        assert_eq!(s["authenticated"], true, "step {i}: {s}");
    }

    // Signed in: exactly her accounts, as labelled.
    assert_eq!(accounts(&done[1]["value"]), hers, "{}", context(&env));
    // Her account reached the provider, narrowed; Bob's reached nothing.
    let provider: Vec<_> = env
        .traffic()
        .into_iter()
        .filter(|r| r.host == "proxy")
        .collect();
    assert!(
        provider
            .iter()
            .any(|r| r.credential.as_deref() == Some(DEMO_SALESFORCE_ALICE)),
        "{}",
        context(&env)
    );
    assert!(
        provider
            .iter()
            .all(|r| r.credential.as_deref() != Some(DEMO_SALESFORCE_BOB)),
        "{}",
        context(&env)
    );
    let refusal = done[3]["error"].as_str().unwrap_or_default();
    assert!(!refusal.is_empty(), "the page read credgate's refusal");

    // Connected: one new account, labelled as hers (credgate chose the
    // next free label), usable from the page at once.
    let after = accounts(&done[5]["value"]);
    let new: Vec<_> = after.difference(&hers).cloned().collect();
    assert_eq!(new.len(), 1, "{}", context(&env));
    let (installed, label) = new[0].clone();
    assert_eq!(label, "alice/2");
    env.learn(&installed, "salesforce", "alice/2");
    assert_eq!(done[4]["value"]["credentialId"], installed.as_str());
    assert!(
        provider_after(&env)
            .iter()
            .any(|c| c.as_deref() == Some(installed.as_str())),
        "{}",
        context(&env)
    );
    // Disconnected her first Salesforce account; the new one stays hers.
    let last = accounts(&done[8]["value"]);
    assert!(!last.iter().any(|(id, _)| id == DEMO_SALESFORCE_ALICE));
    assert!(last.contains(&(installed.clone(), "alice/2".into())));
    // The new account is hers, not Bob's: his request naming it is refused
    // and reaches nothing; hers goes through.
    let got = env.salesforce_get("bob", "x", &installed, &[]).await;
    assert_eq!(got.status, 403);
    assert!(env.forwarded(&got).is_empty());
    let got = env.salesforce_get("alice", "x", &installed, &[]).await;
    env.assert_routed(&got, &installed, Place::Header);
    // Her token never reached Paragon, in a header or a URL.
    for r in env.state().requests() {
        assert!(
            !r.query.as_deref().unwrap_or("").contains(&alice),
            "{} {:?}",
            r.path,
            r.query
        );
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains(&alice)),
            "{}",
            r.path
        );
    }
}

fn provider_after(env: &Env) -> Vec<Option<String>> {
    env.traffic()
        .into_iter()
        .filter(|r| r.host == "proxy")
        .map(|r| r.credential)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_an_origin_not_in_cors_gets_nothing() {
    let page = SdkPage::start().await;
    let env = env_for("http://127.0.0.1:1").await;
    let alice = env.member("alice");
    let steps = vec![
        Step::Authenticate { token: alice },
        Step::Request {
            integration: "salesforce".into(),
            path: "/x".into(),
            options: json!({"method": "GET", "selectedCredentialId": DEMO_SALESFORCE_ALICE}),
        },
    ];
    let html = journey_page(
        &format!("http://{}", env.gw.addr),
        PROJECT,
        &steps,
        Duration::from_secs(20),
    );
    let result = page.run(html, RUN_TIMEOUT).await;
    let done = result["steps"].as_array().expect("the journey ran");
    for s in done {
        assert_eq!(s["ok"], false, "{s}");
    }
    assert!(
        env.traffic().is_empty(),
        "nothing reached Paragon: {}",
        traffic_summary(&env)
    );
}
