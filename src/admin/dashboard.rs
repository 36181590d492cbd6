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

use std::fmt::Write as _;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::recent::{Counts, Recent, Refusal};
use crate::gateway::State;
use crate::net::body::{full, Body};

/// Refusals listed on the page (the ring holds more, for the filters).
const SHOWN_REFUSALS: usize = 50;

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
    let html = render(state, recent, &q, &nonce, access);
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

fn render(
    state: &State,
    recent: &Recent,
    q: &Query,
    nonce: &str,
    access: Option<Review>,
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
    refusals(&mut o, recent, q);
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
code{font-size:.95em}form{margin:.4em 0}input{margin-right:.5em}";

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

fn refusals(o: &mut String, recent: &Recent, q: &Query) {
    let list = recent.refusals(q.user.as_deref(), q.principal.as_deref());
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
    o.push_str(
        "<table><tr><th>time</th><th>decision</th><th>status</th><th>code</th><th>reason</th>\
         <th>principal</th><th>actor</th><th>user</th><th>product</th><th>integration</th><th>credential named</th>\
         <th>request</th><th>request id</th></tr>",
    );
    for r in list.iter().take(SHOWN_REFUSALS) {
        refusal_row(o, r);
    }
    o.push_str("</table>");
}

fn refusal_row(o: &mut String, r: &Refusal) {
    let principal = if r.principal.is_empty() && !r.claimed_principal.is_empty() {
        format!(
            "{} <span class=\"muted\">(claimed)</span>",
            esc(&r.claimed_principal)
        )
    } else {
        esc(&r.principal)
    };
    let reason = if r.rule.is_empty() {
        esc(&r.reason)
    } else {
        format!("{} <code>{}</code>", esc(&r.reason), esc(&r.rule))
    };
    let _ = write!(
        o,
        "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{reason}</td>\
         <td>{principal}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
        when(r.at_ms),
        esc(&r.decision),
        esc(&r.decision),
        r.status,
        esc(&r.code),
        esc(&r.actor),
        esc(&r.user),
        esc(&r.product),
        esc(&r.integration),
        esc(&r.requested),
        esc(&r.method),
        esc(&r.path),
        esc(&r.request_id),
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
        "<table><tr><th>credential</th><th>integration</th><th>externalId</th><th>status</th>\
         <th>who may use it</th></tr>",
    );
    for c in review["credentials"].as_array().into_iter().flatten() {
        let who: Vec<String> = c["access"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("<b>{}</b>: {}", s(&a["grant"]), s(&a["who"])))
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

fn caches(o: &mut String, state: &State) {
    let m = &state.metrics;
    let g = state.current.load();
    let _ = write!(
        o,
        "<h2>Caches</h2><table><tr><th></th><th>entries</th><th>hits</th><th>misses</th><th>other</th></tr>\
         <tr><th>credential lists</th><td>{} users</td><td>{}</td><td>{}</td><td>{} loads, {} load errors, {} stale served</td></tr>\
         <tr><th>verified tokens</th><td>{}</td><td>{}</td><td>{}</td><td></td></tr>\
         <tr><th>minted tokens</th><td></td><td>{}</td><td></td><td>{} signed</td></tr></table>",
        state.directory.load().user_count(),
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
        refusal_row(&mut o, &r);
        assert!(
            o.contains("<td>alice</td><td>agent-&lt;7&gt;</td><td>acme</td>"),
            "{o}"
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
