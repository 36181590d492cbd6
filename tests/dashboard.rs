//! The admin dashboard (`GET /` on the admin listener, contract §9):
//! its security headers, what it shows while traffic runs, and the page as
//! a real browser renders it (Debian's headless Chromium, which the test
//! command installs when missing, started so that it can reach nothing but
//! loopback).

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::path::Path;
use std::time::Duration;

use common::browser::loopback_chromium;
use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use harness::*;

/// A principal that would run script if the page wrote it as markup.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

fn proxy_path(rest: &str) -> String {
    format!("/projects/{PROJECT}/sdk/proxy/salesforce/{rest}")
}

/// Traffic with two refusals: alice naming bob's account, and a caller
/// whose principal is markup naming alice's.
async fn traffic(env: &Env) {
    let ok = env
        .salesforce_get("alice", "mine", DEMO_SALESFORCE_ALICE, &[])
        .await;
    assert_eq!(ok.status, 200);
    let foreign = env
        .salesforce_get("alice", "foreign", DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(foreign.status, 403);
    let refused = env
        .salesforce_get(HOSTILE, "xss", DEMO_SALESFORCE_ALICE, &[])
        .await;
    assert_eq!(refused.status, 403);
}

async fn page(env: &Env, query: &str) -> Got {
    get(
        &client(),
        &format!("http://{}/{query}", env.gw.admin_addr),
        None,
    )
    .await
}

#[tokio::test]
async fn the_dashboard_shows_refusals_escaped_under_a_strict_policy() {
    let env = Env::start().await;
    traffic(&env).await;
    let got = page(&env, "").await;
    assert_eq!(got.status, 200);
    let h = |name: &str| {
        got.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("content-type"), "text/html; charset=utf-8");
    assert_eq!(h("x-frame-options"), "DENY");
    let csp = h("content-security-policy");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'nonce-"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script allowed: {csp}");
    let html = String::from_utf8(got.body.to_vec()).unwrap();
    // The CSP's nonce is the style element's, and differs per response.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("<style nonce=\"{nonce}\">")),
        "{html}"
    );
    let again = page(&env, "").await;
    assert_ne!(
        again
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap(),
        csp
    );
    assert!(!html.contains("<script"), "no script on the page");
    // Both refusals, newest first; the markup principal as text only.
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(!html.contains(HOSTILE), "{html}");
    assert!(html.contains("/sdk/proxy/salesforce/foreign"), "{html}");
    assert!(html.contains("credential_forbidden"), "{html}");
    assert!(
        html.find("/salesforce/xss").unwrap() < html.find("/salesforce/foreign").unwrap(),
        "newest first"
    );
    // The allowed request is no refusal.
    assert!(!html.contains("/salesforce/mine"), "{html}");
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    // Traffic since the first sample (taken at start): one allowed and two
    // refused proxy requests.
    let traffic = &html[html.find("<h2>Traffic</h2>").unwrap()..html.find("<h2>Recent").unwrap()];
    assert!(
        traffic.contains(
            "<td>proxy</td><td class=\"allowed\">allowed</td><td>1</td><td>1</td><td>1</td>"
        ),
        "{traffic}"
    );
    assert!(
        traffic.contains(
            "<td>proxy</td><td class=\"refused\">refused</td><td>2</td><td>2</td><td>2</td>"
        ),
        "{traffic}"
    );

    // Filtered by principal: only alice's refusal.
    let alice_only = page(&env, "?principal=alice").await;
    let text = String::from_utf8(alice_only.body.to_vec()).unwrap();
    assert!(text.contains("/salesforce/foreign") && !text.contains("/salesforce/xss"));
    // And by user: the access review of acme lists every account with who
    // may use it.
    let review = page(&env, "?user=acme").await;
    let text = String::from_utf8(review.body.to_vec()).unwrap();
    assert!(
        text.contains(DEMO_SALESFORCE_ALICE) && text.contains(DEMO_SALESFORCE_BOB),
        "{text}"
    );
    assert!(text.contains("owner_label"), "{text}");
    // Anything but GET is refused.
    let post = send(
        &client(),
        http::Request::post(format!("http://{}/", env.gw.admin_addr))
            .header("content-type", "application/json")
            .body(credgate::net::body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 405);
}

/// Headless Chromium that can reach loopback only (`common::browser`).
fn browse(url: &str, profile: &Path, extra: &[&str]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(common::browser::chromium())
        .args(loopback_chromium(profile).get_args())
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_real_browser_renders_the_refusal_and_the_markup_principal_as_text() {
    let env = Env::start().await;
    // Traffic keeps running while the browser loads the page.
    let alice = env.member("alice");
    let gw = env.gw.addr;
    let background = tokio::spawn(async move {
        let cl = client();
        for i in 0..200 {
            let r = http::Request::get(format!("http://{gw}{}", proxy_path(&format!("bg-{i}"))))
                .header("authorization", format!("Bearer {alice}"))
                .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
                .body(credgate::net::body::empty())
                .unwrap();
            let _ = send(&cl, r).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    traffic(&env).await;
    let url = format!("http://{}/?user=acme", env.gw.admin_addr);
    let profile = env.keys.path().join("chromium-profile");
    let dom = {
        let (url, profile) = (url.clone(), profile.clone());
        tokio::task::spawn_blocking(move || browse(&url, &profile, &["--dump-dom"]))
            .await
            .unwrap()
    };
    // The rendered document: the refusal rows are there, and the hostile
    // principal is a text node, not an element.
    assert!(dom.contains("Recent refusals"), "{dom}");
    assert!(dom.contains("/sdk/proxy/salesforce/foreign"), "{dom}");
    assert!(dom.contains("credential_forbidden"), "{dom}");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(
        !dom.contains("<img"),
        "no element came from a principal: {dom}"
    );
    assert!(
        dom.contains(DEMO_SALESFORCE_BOB),
        "the access review: {dom}"
    );

    // A screenshot of the page (kept for the README when asked).
    let shot = env.keys.path().join("dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        browse(
            &url,
            &profile,
            &[&arg, "--window-size=1400,1500", "--hide-scrollbars"],
        )
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(to) = std::env::var("CREDGATE_SCREENSHOT") {
        std::fs::copy(&shot, to).unwrap();
    }
    background.await.unwrap();
}

#[tokio::test]
async fn shadow_refusals_and_a_rejected_reload_are_shown() {
    let env = Env::with(fixtures(), |b| b.policy("enforce = \"shadow\"")).await;
    // Forwarded in shadow mode, recorded as a shadow refusal.
    let got = env
        .salesforce_get("alice", "shadowed", DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(got.status, 200);
    // A reload that cannot be applied (its audit file cannot be opened)
    // keeps the old config; the page says so.
    let mut bad = ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url())).build();
    bad.audit.file = Some("/nonexistent-dir/audit.jsonl".into());
    assert!(env.gw.reload(bad).is_err());
    let html = String::from_utf8(page(&env, "").await.body.to_vec()).unwrap();
    assert!(
        html.contains("rejected: audit.file /nonexistent-dir/audit.jsonl"),
        "{html}"
    );
    // Then one that applies, with a note.
    let mut good = ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url()))
        .policy("enforce = \"shadow\"")
        .build();
    good.server.worker_threads = 7;
    let notes = env
        .gw
        .reload(good)
        .expect("a reload with restart-only changes applies");
    assert!(
        notes.iter().any(|n| n.contains("worker_threads")),
        "{notes:?}"
    );
    let html = String::from_utf8(page(&env, "").await.body.to_vec()).unwrap();
    assert!(
        html.contains("<td class=\"shadow_refused\">shadow_refused</td>"),
        "{html}"
    );
    assert!(html.contains("/salesforce/shadowed"), "{html}");
    assert!(
        html.contains("shadow: "),
        "the policy row names the shadowed products: {html}"
    );
    assert!(
        html.contains("applied; server.worker_threads changed: takes effect after a restart"),
        "{html}"
    );
}
