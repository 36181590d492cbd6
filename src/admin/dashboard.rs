//! The admin dashboard (contract §9): `GET /` on the admin listener, one
//! server-rendered HTML page with no external assets and no script. It
//! shows the replica's status, the traffic of the last minutes by product
//! and decision, the latest refusals and shadow refusals (filterable by
//! user and principal), the access review of one user, the caches, the
//! verification keys and the cluster's health, and reloads itself every
//! five seconds (`<meta http-equiv="refresh">`).
//!
//! Every value that a caller, Paragon or the config controls is written
//! through [`esc`]; the page's only style sheet is inline and allowed by a
//! per-response nonce in a Content-Security-Policy that allows nothing else
//! (no script, no image, no connection, no framing).
//!
//! It answers "whose account?" from what credgate holds: a refusal names
//! the requested account's integration and label from the cached lists
//! (never by asking Paragon: a page load reaches no upstream), and an ACL
//! grant its number and principals. Its wide tables keep to the window
//! (fixed layout, long values wrapped or cut with the whole value in a
//! `title`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::recent::{Counts, Recent, Refusal};
use crate::gateway::State;
use crate::net::body::{full, Body};

/// Refusals listed on the page (the ring holds more, for the filters).
const SHOWN_REFUSALS: usize = 50;

/// The longest value a refusal's cell shows whole; a longer one is cut,
/// its whole value in the cell's `title` (the table fits a 1,400 px
/// window).
const CELL_CHARS: usize = 60;

/// What the cached lists say of an account, by its lowercase id: its
/// integration and its label (`externalId`).
type Names = HashMap<String, (Arc<str>, Option<Box<str>>)>;

/// Text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// What the page was asked for: `?user=U&principal=P`.
#[derive(Debug, Default)]
pub struct Query {
    pub user: Option<String>,
    pub principal: Option<String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query {
            user: param(query, "user").filter(|v| !v.is_empty()),
            principal: param(query, "principal").filter(|v| !v.is_empty()),
        }
    }
}

/// A query parameter of the admin listener's pages and endpoints, decoded
/// (`+` as space, percent escapes); `None` when absent or not UTF-8.
pub fn param(query: Option<&str>, name: &str) -> Option<String> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| {
                crate::gateway::path::percent_decode(v.replace('+', " ").as_bytes())
                    .and_then(|b| String::from_utf8(b.into_owned()).ok())
            })
        })
        .flatten()
}

/// The page, with its security headers.
pub async fn page(state: &State, recent: &Recent, query: Option<&str>) -> Response<Body> {
    let q = Query::parse(query);
    let nonce: String = crate::keygen::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let access = match &q.user {
        Some(u) => Some(super::access::review(state, u).await),
        None => None,
    };
    let refusals = recent.refusals(q.user.as_deref(), q.principal.as_deref());
    let shown = &refusals[..refusals.len().min(SHOWN_REFUSALS)];
    let names = account_names(state, shown).await;
    // Exact counts for the caches row (moka's trail its pending work).
    state.directory.load_full().sync().await;
    let html = render(state, recent, &q, &nonce, access, (shown, &names));
    let mut r = Response::new(full(html));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert("content-security-policy", v);
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

type Review = Result<serde_json::Value, super::access::AccessError>;

/// The integration and label of each account the `shown` refusals name,
/// from the lists this replica holds: the refusal's Connected User's, or
/// the one whose list held the id lately (another tenant's account). Read
/// without loading anything (mint mode's lists; passthrough keys its lists
/// by token scope, and then only the id is shown).
async fn account_names(state: &State, shown: &[Refusal]) -> Names {
    use crate::paragon::credentials::CredentialList;
    use crate::paragon::directory::DirKey;
    let directory = state.directory.load_full();
    let mut lists: HashMap<Arc<str>, Option<Arc<CredentialList>>> = HashMap::new();
    let mut names = Names::new();
    for r in shown {
        let id = r.requested.to_ascii_lowercase();
        if id.is_empty() || names.contains_key(&id) {
            continue;
        }
        let mine = (!r.user.is_empty()).then(|| Arc::<str>::from(r.user.as_str()));
        for user in [mine, directory.cached_owner(&id)].into_iter().flatten() {
            let list = match lists.get(&user) {
                Some(l) => l.clone(),
                None => {
                    let l = directory.peek(&DirKey::user(user.clone())).await;
                    lists.insert(user, l.clone());
                    l
                }
            };
            let found = list
                .as_ref()
                .and_then(|l| l.credentials.iter().find(|c| *c.id == *id));
            if let Some(c) = found {
                names.insert(id, (c.integration.clone(), c.external_id.clone()));
                break;
            }
        }
    }
    names
}

fn render(
    state: &State,
    recent: &Recent,
    q: &Query,
    nonce: &str,
    access: Option<Review>,
    refused: (&[Refusal], &Names),
) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>credgate</title>\
         <style nonce=\"{nonce}\">{STYLE}</style></head><body><h1>credgate</h1>"
    );
    status(&mut o, state, recent);
    traffic(&mut o, state, recent);
    refusals(&mut o, q, refused.0, refused.1);
    access_review(&mut o, q, access);
    caches(&mut o, state);
    keys(&mut o, state);
    o.push_str("</body></html>");
    o
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#1a1a1a}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}.refused{color:#a00}.shadow_refused{color:#a60}.ok{color:#070}.muted{color:#777}\
code{font-size:.95em}form{margin:.4em 0}input{margin-right:.5em}\
table.wide{table-layout:fixed;width:100%}table.wide td,table.wide th{overflow-wrap:anywhere;overflow:hidden}\
col.w6{width:6em}col.w8{width:8.5em}col.w12{width:12em}col.w14{width:14em}col.w22{width:22em}";

/// A value for a table cell: escaped, and over [`CELL_CHARS`] cut, with
/// the whole value (escaped) in the `title`.
fn clipped(v: &str) -> String {
    if v.chars().count() <= CELL_CHARS {
        return esc(v);
    }
    let cut: String = v.chars().take(CELL_CHARS - 1).collect();
    format!("<span title=\"{}\">{}\u{2026}</span>", esc(v), esc(&cut))
}

/// A path for a table cell: as [`clipped`], but cut in the middle, so
/// that its end (what it asks for, after the project's prefix) shows.
fn clipped_path(v: &str) -> String {
    let n = v.chars().count();
    if n <= CELL_CHARS {
        return esc(v);
    }
    let head: String = v.chars().take(12).collect();
    let tail: String = v.chars().skip(n - (CELL_CHARS - 13)).collect();
    format!(
        "<span title=\"{}\">{}\u{2026}{}</span>",
        esc(v),
        esc(&head),
        esc(&tail)
    )
}

fn when(ms: i64) -> String {
    esc(&crate::clock::format_iso(ms))
}

fn status(o: &mut String, state: &State, recent: &Recent) {
    let g = state.current.load();
    let c = &g.config;
    let uptime = recent.started.elapsed().as_secs();
    let enforce = if c.policy.shadow.is_empty() {
        "enforce".to_string()
    } else {
        let products: Vec<&str> = c.policy.shadow.iter().map(|p| p.as_str()).collect();
        format!("shadow: {}", products.join(", "))
    };
    let reload = match recent.last_reload() {
        None => "none since start".to_string(),
        Some(r) => match r.result {
            Ok(notes) if notes.is_empty() => format!("{}: applied", when(r.at_ms)),
            Ok(notes) => format!("{}: applied; {}", when(r.at_ms), esc(&notes.join("; "))),
            Err(e) => format!(
                "{}: <span class=\"refused\">rejected: {}</span>",
                when(r.at_ms),
                esc(&e)
            ),
        },
    };
    let cluster = match &state.replicas {
        None => "off (single replica)",
        Some(r) if r.is_degraded() => {
            "<span class=\"refused\">degraded: the database is unreachable</span>"
        }
        Some(_) => "<span class=\"ok\">healthy</span>",
    };
    let _ = write!(
        o,
        "<h2>Status</h2><table>\
         <tr><th>version</th><td>{}</td></tr>\
         <tr><th>up since</th><td>{} ({uptime} s)</td></tr>\
         <tr><th>auth mode</th><td>{}</td></tr>\
         <tr><th>policy</th><td>{}</td></tr>\
         <tr><th>config loaded</th><td>{} <span class=\"muted\">sha256 {}</span></td></tr>\
         <tr><th>last reload</th><td>{reload}</td></tr>\
         <tr><th>workers</th><td>{} ({})</td></tr>\
         <tr><th>cluster</th><td>{cluster}</td></tr></table>",
        esc(env!("CARGO_PKG_VERSION")),
        when(recent.started_ms),
        esc(c.auth.mode.as_str()),
        esc(&enforce),
        when(g.loaded_ms),
        esc(&c.sha256),
        c.server.workers(),
        esc(c.server.scheduler.as_str()),
    );
}

fn traffic(o: &mut String, state: &State, recent: &Recent) {
    let now_ms = crate::clock::now_ms();
    let now = super::recent::request_counts(&state.metrics.encode());
    let windows = [60_000i64, 300_000];
    let deltas: Vec<Option<(i64, Counts)>> = windows
        .iter()
        .map(|&w| recent.since(now_ms, &now, w))
        .collect();
    o.push_str("<h2>Traffic</h2>");
    let Some(Some((span_1, _))) = deltas.first() else {
        o.push_str("<p class=\"muted\">no sample yet</p>");
        return;
    };
    let span_5 = deltas[1].as_ref().map_or(0, |d| d.0);
    let _ = write!(
        o,
        "<table><tr><th>product</th><th>decision</th>\
         <th>last minute <span class=\"muted\">({} s sampled)</span></th>\
         <th>last 5 minutes <span class=\"muted\">({} s sampled)</span></th><th>since start</th></tr>",
        span_1 / 1000,
        span_5 / 1000
    );
    for ((product, decision), total) in &now {
        let n = |i: usize| {
            deltas[i]
                .as_ref()
                .and_then(|(_, d)| d.get(&(product.clone(), decision.clone())).copied())
                .unwrap_or(0)
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{total}</td></tr>",
            esc(product),
            esc(decision),
            esc(decision),
            n(0),
            n(1)
        );
    }
    o.push_str("</table>");
}

fn refusals(o: &mut String, q: &Query, list: &[Refusal], names: &Names) {
    let _ = write!(
        o,
        "<h2>Recent refusals and shadow refusals</h2>\
         <form method=\"get\" action=\"/\"><label>user <input name=\"user\" value=\"{}\"></label>\
         <label>principal <input name=\"principal\" value=\"{}\"></label>\
         <button type=\"submit\">filter</button></form>",
        esc(q.user.as_deref().unwrap_or("")),
        esc(q.principal.as_deref().unwrap_or(""))
    );
    if list.is_empty() {
        o.push_str("<p class=\"muted\">none</p>");
        return;
    }
    // Fixed layout within the window (issue 29: a 1,400 px window showed
    // half the table): ten columns, the short ones sized, the rest share
    // what is left; an agent shows under its principal, the request id
    // under the request.
    o.push_str(
        "<table class=\"wide refusals\"><colgroup><col class=\"w8\"><col class=\"w8\"><col class=\"w12\">\
         <col><col><col><col class=\"w6\"><col><col class=\"w14\"><col></colgroup>\
         <tr><th>time</th><th>decision</th><th>answer</th><th>reason</th>\
         <th>principal</th><th>user</th><th>product</th><th>integration</th><th>credential named</th>\
         <th>request</th></tr>",
    );
    for r in list {
        refusal_row(o, r, names);
    }
    o.push_str("</table>");
}

fn refusal_row(o: &mut String, r: &Refusal, names: &Names) {
    let mut principal = if r.principal.is_empty() && !r.claimed_principal.is_empty() {
        format!(
            "{} <span class=\"muted\">(claimed)</span>",
            clipped(&r.claimed_principal)
        )
    } else {
        clipped(&r.principal)
    };
    if !r.actor.is_empty() {
        let _ = write!(
            principal,
            "<br><span class=\"muted\">agent {}</span>",
            clipped(&r.actor)
        );
    }
    // What decided beyond the reason: the rule, or the limit of a 429.
    let detail = if r.rule.is_empty() { &r.scope } else { &r.rule };
    let reason = if detail.is_empty() {
        esc(&r.reason)
    } else {
        format!("{} <code>{}</code>", esc(&r.reason), clipped(detail))
    };
    let named = names.get(&r.requested.to_ascii_lowercase());
    let integration = match (r.integration.is_empty(), named) {
        (true, Some((i, _))) => clipped(i),
        _ => clipped(&r.integration),
    };
    // Whose account: the id, and beneath it what the cached list says of it.
    let requested = match named {
        Some((i, label)) => {
            let mut whose = clipped(i);
            if let Some(l) = label {
                let _ = write!(whose, " \u{b7} {}", clipped(l));
            }
            format!(
                "<code>{}</code><br><span class=\"muted\">{whose}</span>",
                clipped(&r.requested)
            )
        }
        None => clipped(&r.requested),
    };
    let at = esc(&crate::clock::format_iso(r.at_ms)).replacen('T', "<br>", 1);
    let _ = write!(
        o,
        "<tr><td>{at}</td><td class=\"{}\">{}</td><td>{} {}</td><td>{reason}</td>\
         <td>{principal}</td><td>{}</td><td>{}</td><td>{integration}</td><td>{requested}</td>\
         <td>{} {}<br><span class=\"muted\">{}</span></td></tr>",
        esc(&r.decision),
        esc(&r.decision),
        r.status,
        esc(&r.code),
        clipped(&r.user),
        esc(&r.product),
        esc(&r.method),
        clipped_path(&r.path),
        clipped(&r.request_id),
    );
}

fn access_review(o: &mut String, q: &Query, access: Option<Review>) {
    let _ = write!(
        o,
        "<h2>Access review</h2><form method=\"get\" action=\"/\">\
         <label>Connected User <input name=\"user\" value=\"{}\"></label>\
         <button type=\"submit\">review</button></form>",
        esc(q.user.as_deref().unwrap_or(""))
    );
    let review = match access {
        None => return,
        Some(Err(e)) => {
            let _ = write!(o, "<p class=\"refused\">{}</p>", esc(&e.to_string()));
            return;
        }
        Some(Ok(v)) => v,
    };
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    o.push_str(
        "<table class=\"wide\"><colgroup><col class=\"w22\"><col class=\"w8\"><col class=\"w8\"><col class=\"w6\"><col></colgroup>\
         <tr><th>credential</th><th>integration</th><th>externalId</th><th>status</th>\
         <th>who may use it</th></tr>",
    );
    for c in review["credentials"].as_array().into_iter().flatten() {
        let who: Vec<String> = c["access"]
            .as_array()
            .into_iter()
            .flatten()
            .map(grant_line)
            .collect();
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(&c["id"]),
            s(&c["integration"]),
            s(&c["externalId"]),
            s(&c["status"]),
            if who.is_empty() {
                "<span class=\"muted\">nobody but admins</span>".to_string()
            } else {
                who.join("<br>")
            }
        );
    }
    o.push_str("</table>");
}

/// One grant of the access review: its kind, who it says, and for an ACL
/// grant the principals it names (as `credgate access` lists them).
fn grant_line(a: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    let mut line = format!("<b>{}</b>: {}", s(&a["grant"]), s(&a["who"]));
    let principals: Vec<&str> = a["principals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    if a["grant"] == "acl" && !principals.is_empty() && principals != ["*"] {
        let _ = write!(line, ": {}", esc(&principals.join(", ")));
    }
    line
}

fn caches(o: &mut String, state: &State) {
    let m = &state.metrics;
    let g = state.current.load();
    // Entries are what is cached now (a list per Connected User, per
    // token scope in passthrough mode); hits and misses count lookups since
    // start. The page ran moka's pending work first, so the count is exact.
    let lists = state.directory.load().user_count();
    let _ = write!(
        o,
        "<h2>Caches</h2><table><tr><th></th><th>entries now</th><th>hits since start</th><th>misses since start</th><th>other</th></tr>\
         <tr><th>credential lists</th><td>{lists} {}</td><td>{}</td><td>{}</td><td>{} loads, {} load errors, {} stale served</td></tr>\
         <tr><th>verified tokens</th><td>{}</td><td>{}</td><td>{}</td><td></td></tr>\
         <tr><th>minted tokens</th><td></td><td>{}</td><td></td><td>{} signed</td></tr></table>",
        if lists == 1 { "list" } else { "lists" },
        m.credential_cache_hits.get(),
        m.credential_cache_misses.get(),
        m.credential_cache_loads.get(),
        m.credential_cache_load_errors.get(),
        m.credential_cache_stale_served.get(),
        g.auth.cached_tokens(),
        m.verified_token_cache_hits.get(),
        m.verified_token_cache_misses.get(),
        m.mint_cache_hits.get(),
        m.token_mints.get(),
    );
}

fn keys(o: &mut String, state: &State) {
    let g = state.current.load();
    let keys = g.auth.keys_in_use();
    o.push_str("<h2>Caller verification keys</h2>");
    if keys.is_empty() {
        o.push_str("<p class=\"muted\">none loaded</p>");
        return;
    }
    o.push_str("<table><tr><th>kid</th><th>algorithm</th><th>from</th><th>fetched</th></tr>");
    for (kid, alg, from, fetched) in keys {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(kid.as_deref().unwrap_or("(none)")),
            esc(&format!("{alg:?}")),
            from,
            fetched.map(when).unwrap_or_default()
        );
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_markup_could_hide_in_is_escaped() {
        assert_eq!(
            esc("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(esc("a\"b'c&d"), "a&quot;b&#39;c&amp;d");
        assert_eq!(esc("line\nbreak"), "line\\u{a}break");
    }

    /// contract §12: a refusal made by an agent acting for a principal
    /// shows the agent (`act.sub`) beside the principal.
    #[test]
    fn a_refusal_shows_the_acting_agent() {
        let record = crate::audit::Record {
            request_id: "r1",
            principal: "alice",
            actor: Some("agent-<7>"),
            user: "acme",
            decision: "refused",
            reason: "no_grant",
            status: 403,
            ..crate::audit::Record::default()
        };
        let r = Refusal::from_record(&record, &http::Method::GET, "/p");
        let mut o = String::new();
        refusal_row(&mut o, &r, &Names::new());
        assert!(
            o.contains(
                "<td>alice<br><span class=\"muted\">agent agent-&lt;7&gt;</span></td><td>acme</td>"
            ),
            "{o}"
        );
    }

    /// Issue 29: the refusals table keeps to the window: a fixed layout
    /// whose cells wrap, and a long value cut with its whole value in a
    /// `title`, escaped there too; the requested account shows its
    /// integration and label when the cached list knows them.
    #[test]
    fn the_refusals_table_fits_the_window_and_names_the_account() {
        assert!(STYLE.contains("table.wide{table-layout:fixed;width:100%}"));
        assert!(STYLE.contains("overflow-wrap:anywhere"));
        let long = format!("<b>{}</b>", "x".repeat(100));
        let record = crate::audit::Record {
            request_id: "r1",
            principal: &long,
            user: "acme",
            requested: "B0B00000-5A1E-4000-8000-000000000001",
            decision: "refused",
            reason: "no_grant",
            status: 403,
            ..crate::audit::Record::default()
        };
        let r = Refusal::from_record(&record, &http::Method::GET, "/p");
        let mut names = Names::new();
        names.insert(
            "b0b00000-5a1e-4000-8000-000000000001".into(),
            ("salesforce".into(), Some("bob <&>".into())),
        );
        let mut o = String::new();
        refusals(&mut o, &Query::default(), &[r], &names);
        assert!(
            o.contains("<table class=\"wide refusals\"><colgroup>"),
            "{o}"
        );
        let cut: String = esc(&long).chars().take(10).collect();
        assert!(
            o.contains(&format!("<span title=\"{}\">{cut}", esc(&long))),
            "{o}"
        );
        assert!(!o.contains(&long) && !o.contains("<b>"), "{o}");
        assert!(
            o.contains(
                "<td>salesforce</td><td><code>B0B00000-5A1E-4000-8000-000000000001</code><br>\
                        <span class=\"muted\">salesforce \u{b7} bob &lt;&amp;&gt;</span></td>"
            ),
            "{o}"
        );
    }

    #[test]
    fn a_long_path_keeps_its_end_in_view() {
        let path = "/projects/11111111-2222-3333-4444-555555555555/sdk/proxy/salesforce/<x>";
        let cell = clipped_path(path);
        assert!(
            cell.starts_with(&format!("<span title=\"{}\">/projects/11", esc(path))),
            "{cell}"
        );
        assert!(
            cell.ends_with("/sdk/proxy/salesforce/&lt;x&gt;</span>"),
            "{cell}"
        );
        assert_eq!(clipped_path("/short"), "/short");
    }

    /// Issue 29: an ACL grant shows its principals, as `credgate access`
    /// lists them; a grant for every member says so in words.
    #[test]
    fn an_acl_grant_shows_its_principals() {
        let line = grant_line(&serde_json::json!({
            "grant": "acl", "index": 1, "principals": ["alice", "<carol>"], "who": "ACL grant 1"
        }));
        assert_eq!(line, "<b>acl</b>: ACL grant 1: alice, &lt;carol&gt;");
        let everyone = grant_line(&serde_json::json!({
            "grant": "acl", "index": 2, "principals": ["*"], "who": "every member (ACL grant for \"*\")"
        }));
        assert_eq!(
            everyone,
            "<b>acl</b>: every member (ACL grant for &quot;*&quot;)"
        );
    }

    #[test]
    fn the_query_names_user_and_principal() {
        let q = Query::parse(Some("user=acme&principal=al%3Cice+x&other=1"));
        assert_eq!(q.user.as_deref(), Some("acme"));
        assert_eq!(q.principal.as_deref(), Some("al<ice x"));
        let empty = Query::parse(Some("user=&principal"));
        assert!(empty.user.is_none() && empty.principal.is_none());
    }
}
