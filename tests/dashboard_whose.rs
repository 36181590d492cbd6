//! The dashboard answers "whose account?" (issue 29, item 2; contract §9,
//! §5a, §5c): an ACL grant is numbered from 1 wherever a number is shown
//! and names its principals; a refusal names the requested account's
//! integration and label from the cached lists (never by asking Paragon);
//! a 429 names its product and the limit that refused it; the caches row
//! counts what is cached. Against the gateway and the Paragon emulator.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use credgate::emulator::UserFixture;
use harness::*;
use serde_json::json;

/// globex's one account, labelled `shared`.
const GLOBEX_SF: &str = "610be000-5a1e-4000-8000-000000000001";

/// Grant 1: erin and frank get carol's Drive; grant 2: gina carol's
/// Salesforce account.
const ACL: &str = r#"
[[grant]]
principals = ["erin", "frank"]
credentials = ["CAROL_DRIVE"]

[[grant]]
principal = "gina"
credentials = ["CAROL_SF"]
"#;

fn world() -> credgate::emulator::Fixtures {
    let mut f = fixtures();
    f.users.push(UserFixture {
        id: "globex".into(),
        meta: json!({}),
        credentials: vec![owned(GLOBEX_SF, "salesforce", "shared")],
    });
    f
}

async fn page(env: &Env, query: &str) -> String {
    let got = get(
        &env.cl,
        &format!("http://{}/{query}", env.gw.admin_addr),
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    String::from_utf8(got.body.to_vec()).unwrap()
}

/// The part of the page under heading `h2` (up to the next heading).
fn section<'p>(html: &'p str, h2: &str) -> &'p str {
    let start = html
        .find(&format!("<h2>{h2}"))
        .unwrap_or_else(|| panic!("no {h2}: {html}"));
    let rest = &html[start + 4..];
    &html[start..start + 4 + rest.find("<h2>").unwrap_or(rest.len())]
}

fn proxy(integration: &str, rest: &str) -> String {
    format!("/projects/{PROJECT}/sdk/proxy/{integration}/{rest}")
}

#[tokio::test]
async fn acl_grants_are_numbered_from_one_and_name_their_principals() {
    let dir = TempDir::new("dashboard-acl");
    let acl = dir.write(
        "acl.toml",
        &ACL.replace("CAROL_DRIVE", CAROL_DRIVE)
            .replace("CAROL_SF", CAROL_SF),
    );
    let policy = format!("acl_file = \"{}\"", acl.display());
    let env = Env::with(world(), |b| b.policy(&policy)).await;

    // The audit: erin by grant 1, gina by grant 2.
    let erin = env
        .send_as(
            "GET",
            &proxy("googledrive", "files"),
            &env.member("erin"),
            CAROL_DRIVE,
            "",
        )
        .await;
    assert_eq!(erin.status, 200);
    let gina = env
        .send_as(
            "GET",
            &proxy("salesforce", "q"),
            &env.member("gina"),
            CAROL_SF,
            "",
        )
        .await;
    assert_eq!(gina.status, 200);
    let rec = wait_for_audit(&env.keys, |r| r["principal"] == "erin").await;
    assert_eq!(
        (rec["reason"].clone(), rec["grant"].clone()),
        (json!("acl"), json!(1))
    );
    let rec = wait_for_audit(&env.keys, |r| r["principal"] == "gina").await;
    assert_eq!(
        (rec["grant"].clone(), rec["grant_principal"].clone()),
        (json!(2), json!("gina"))
    );

    // The decision API.
    let (status, a) = env
        .admin_post(
            "/admin/decide",
            json!({"identity": {"user": "acme", "principal": "gina"}, "method": "GET",
                   "path": proxy("salesforce", "q"), "headers": {"x-paragon-credential": CAROL_SF}}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["reason"].clone(), a["grant"].clone()),
        (json!("acl"), json!(2)),
        "{a}"
    );

    // The access review: numbered from 1, with the principals.
    let (status, review) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(status, 200);
    let drive = review["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == CAROL_DRIVE)
        .unwrap();
    let acl_entry = drive["access"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant"] == "acl")
        .unwrap();
    assert_eq!(acl_entry["index"], 1);
    assert_eq!(acl_entry["principals"], json!(["erin", "frank"]));
    assert_eq!(acl_entry["who"], "ACL grant 1");

    // The dashboard's access review shows the principals beside the grant.
    let html = page(&env, "?user=acme").await;
    let review = section(&html, "Access review");
    assert!(
        review.contains("<b>acl</b>: ACL grant 1: erin, frank"),
        "{review}"
    );
    assert!(review.contains("<b>acl</b>: ACL grant 2: gina"), "{review}");
    assert!(!review.contains("ACL grant 0"), "{review}");
}

#[tokio::test]
async fn a_refusal_names_the_requested_account_from_the_cached_lists_only() {
    let env = Env::with(world(), |b| b).await;
    // A globex member loads globex's list; alice then names bob's account
    // (her own user's) and globex's (another tenant's).
    let shared = env
        .send_as(
            "GET",
            &proxy("salesforce", "q"),
            &env.keys.member("globex", "shared"),
            GLOBEX_SF,
            "",
        )
        .await;
    assert_eq!(shared.status, 200);
    let foreign = env
        .salesforce_get("alice", "mine-not", DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(foreign.status, 403);
    let tenant = env.salesforce_get("alice", "cross", GLOBEX_SF, &[]).await;
    assert_eq!(tenant.status, 403);
    // A long path, cut on the page with the whole of it in a title.
    let long = format!("long-{}", "p".repeat(120));
    let refused = env
        .salesforce_get("alice", &long, DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(refused.status, 403);

    let loads = env.loads().len();
    let html = page(&env, "").await;
    assert_eq!(env.loads().len(), loads, "the page asked Paragon nothing");
    let refusals = section(&html, "Recent refusals");
    assert!(
        refusals.contains("<table class=\"wide refusals\"><colgroup>"),
        "{refusals}"
    );
    assert!(
        refusals.contains(&format!(
            "<code>{DEMO_SALESFORCE_BOB}</code><br><span class=\"muted\">salesforce \u{b7} bob</span>"
        )),
        "{refusals}"
    );
    assert!(
        refusals.contains(&format!(
            "<code>{GLOBEX_SF}</code><br><span class=\"muted\">salesforce \u{b7} shared</span>"
        )),
        "another tenant's account, from its own cached list: {refusals}"
    );
    let path = proxy("salesforce", &long);
    assert!(
        refusals.contains(&format!("<span title=\"{path}\">")),
        "{refusals}"
    );
    assert!(!refusals.contains(&format!(">{path}<")), "{refusals}");
    // A path is cut in the middle: what it asks for shows.
    assert!(refusals.contains("/salesforce/cross</span>"), "{refusals}");
    assert!(html.contains("table.wide{table-layout:fixed;width:100%}"));

    // Once the lists are dropped the page shows the id alone, and still
    // asks Paragon nothing.
    env.invalidate(json!({})).await;
    let loads = env.loads().len();
    let html = page(&env, "").await;
    assert_eq!(env.loads().len(), loads);
    let refusals = section(&html, "Recent refusals");
    assert!(refusals.contains(DEMO_SALESFORCE_BOB), "{refusals}");
    assert!(!refusals.contains("salesforce \u{b7} bob"), "{refusals}");
}

#[tokio::test]
async fn a_429_names_its_product_and_the_limit_that_refused_it() {
    let dir = TempDir::new("dashboard-limits");
    let rules = dir.write(
        "rules.toml",
        r#"
[[rule]]
name = "slow-drive"
effect = "limit"
when = 'request.integration == "googledrive"'
rps = 0.01
burst = 1
"#,
    );
    let policy = format!("rules_file = \"{}\"", rules.display());
    let env = Env::with(fixtures(), |mut b| {
        b.extra_top
            .push_str("[limits]\nprincipal_rps = 0.01\nprincipal_burst = 2\nuser_rps = 0.01\nuser_burst = 4\n");
        b.policy(&policy)
    })
    .await;
    // Alice: two, then her principal's limit.
    for i in 0..2 {
        let ok = env
            .salesforce_get("alice", &format!("ok-{i}"), DEMO_SALESFORCE_ALICE, &[])
            .await;
        assert_eq!(ok.status, 200);
    }
    let over = env
        .salesforce_get("alice", "over", DEMO_SALESFORCE_ALICE, &[])
        .await;
    assert_eq!(over.status, 429);
    // Carol: one on Drive, and a second over the rule's limit (it took
    // acme's fourth token); then bob is over the user's limit.
    let carol = env.member("carol");
    let (d1, d2) = (proxy("googledrive", "d1"), proxy("googledrive", "d2"));
    let ok = env.send_as("GET", &d1, &carol, CAROL_DRIVE, "").await;
    assert_eq!(ok.status, 200);
    let ruled = env.send_as("GET", &d2, &carol, CAROL_DRIVE, "").await;
    assert_eq!(ruled.status, 429);
    let bob = env
        .salesforce_get("bob", "b1", DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(
        bob.status, 429,
        "acme's fourth token went to carol's ruled call"
    );

    let principal = wait_for_audit(&env.keys, |r| {
        r["status"] == 429 && r["principal"] == "alice"
    })
    .await;
    assert_eq!(principal["product"], "proxy", "{principal}");
    assert_eq!(principal["scope"], "principal", "{principal}");
    assert_eq!(principal["reason"], "rate_limited");
    let rule = wait_for_audit(&env.keys, |r| r["rule"] == "slow-drive").await;
    assert_eq!(rule["scope"], "slow-drive", "{rule}");
    assert_eq!(rule["product"], "proxy");
    let user = wait_for_audit(&env.keys, |r| r["status"] == 429 && r["principal"] == "bob").await;
    assert_eq!(user["scope"], "user", "{user}");
    // An allowed record has no scope.
    let ok = wait_for_audit(&env.keys, |r| r["status"] == 200).await;
    assert!(ok["scope"].is_null(), "{ok}");

    let html = page(&env, "").await;
    let refusals = section(&html, "Recent refusals");
    assert!(
        refusals.contains("<td>rate_limited <code>principal</code></td>"),
        "{refusals}"
    );
    assert!(
        refusals.contains("<td>rate_limited <code>user</code></td>"),
        "{refusals}"
    );
    assert!(
        refusals.contains("<td>rate_limited <code>slow-drive</code></td>"),
        "{refusals}"
    );
    assert!(
        !refusals.contains("<td>none</td>"),
        "a 429 has its product: {refusals}"
    );
}

#[tokio::test]
async fn the_caches_row_counts_what_is_cached_now() {
    let env = Env::with(world(), |b| b).await;
    let alice = env.member("alice");
    for rest in ["one", "two"] {
        let ok = env
            .send_as(
                "GET",
                &proxy("salesforce", rest),
                &alice,
                DEMO_SALESFORCE_ALICE,
                "",
            )
            .await;
        assert_eq!(ok.status, 200);
    }
    let html = page(&env, "").await;
    let caches = section(&html, "Caches");
    assert!(
        caches.contains("<th>entries now</th><th>hits since start</th>"),
        "{caches}"
    );
    assert!(
        caches.contains("<tr><th>credential lists</th><td>1 list</td>"),
        "{caches}"
    );
    assert!(
        caches.contains("<tr><th>verified tokens</th><td>1</td>"),
        "{caches}"
    );
    // A second Connected User's list.
    let globex = env
        .send_as(
            "GET",
            &proxy("salesforce", "q"),
            &env.keys.member("globex", "shared"),
            GLOBEX_SF,
            "",
        )
        .await;
    assert_eq!(globex.status, 200);
    let caches_html = page(&env, "").await;
    let caches = section(&caches_html, "Caches");
    assert!(
        caches.contains("<tr><th>credential lists</th><td>2 lists</td>"),
        "{caches}"
    );
}
