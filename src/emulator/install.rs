//! Connecting accounts: the install flow of Paragon's Connect SDK
//! (`paragon.installIntegration`, contract §13), as Paragon's `zeus` runs
//! it and the SDK 2.x drives it:
//!
//! 1. The SDK opens a popup on `GET /projects/{p}/sdk/actions/oauth-nonce`
//!    (the token in `userToken`: a navigation sends no header), a page that
//!    posts `{type: "oauth-nonce-loaded"}` to its opener.
//! 2. At once it fetches `GET /v2/projects/{p}/sdk/actions/build-oauth`
//!    with `integrationId`, `installOptions` (JSON) and `oauthMetaKeyId`
//!    (its own random session id): the emulator records an install
//!    session and answers `{"redirectUrl"}`, its own consent page.
//! 3. On the nonce page's message the SDK sends the popup there. The
//!    consent page stands in for the provider's: its form posts back, and
//!    the POST creates a VALID credential of the integration for the
//!    session's user (`externalId` from `installOptions`), or re-connects
//!    the one `installOptions.selectedCredentialId` names, and closes the
//!    popup.
//! 4. The SDK polls `GET /projects/{p}/sdk/actions/session-id/{id}` until
//!    it names `connectCredentialId`, reads that credential, and deletes
//!    the session (`DELETE`, same path).
//!
//! `POST /projects/{p}/sdk/credentials` (the SDK's `_oauthCallback` and
//! `completeInstall`) creates a credential directly, `installOptions` in
//! its JSON body.
//!
//! Refusals (our choice where Paragon documents none): a missing or
//! repeated parameter, `installOptions` that is not a JSON object, both
//! `externalId` and `selectedCredentialId`, or an `externalId` another
//! credential of the user's of that integration already has (the SDK
//! requires it unique per integration): 400; an unknown integration: 404
//! `integration_not_found`; a `selectedCredentialId` (a UUID, an
//! `externalId`, or `ext:<externalId>`, as the SDK reads it) naming no
//! credential of the user's of that integration: 404
//! `credential_not_found`, one the token's claim does not allow: 403
//! `7210`; an unknown or used consent nonce: 404 `consent_not_found`;
//! another user's or an unknown session: 404 `session_not_found`.
//! Creating a credential needs no grant in the permissions claim.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::call::{required_str, ApiError, Call, Handled, Outcome};
use super::catalog;
use super::connect::credential_json;
use super::fixtures::CredentialFixture;
use super::state::{lock, EmulatorState, World};
use super::util::{percent_decode, query_values, random_hex};
use crate::net::body::full;
use crate::paragon::credentials::is_uuid;

/// Where the consent pages live: `{CONSENT_PATH}{nonce}`.
pub(crate) const CONSENT_PATH: &str = "/emulator/consent/";
/// The longest session id (`oauthMetaKeyId`) accepted; the SDK's are 11
/// to 13 characters.
const MAX_SESSION_ID_BYTES: usize = 128;
/// The longest `originForPostMessage` accepted.
const MAX_ORIGIN_BYTES: usize = 2048;

/// What an install's options ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A new account, labelled when `externalId` is a string.
    New { external_id: Option<String> },
    /// Re-connecting this existing credential of the user's.
    Reconnect(String),
}

/// The one value of query parameter `name`: 400 when absent, empty or
/// given twice.
fn one_param(call: &Call<'_>, name: &str) -> Result<String, ApiError> {
    match query_values(call.query, name).as_slice() {
        [v] if !v.is_empty() => Ok(v.clone()),
        [] | [_] => Err(ApiError::bad_request(format!(
            "the `{name}` query parameter is required"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "the `{name}` query parameter may be given only once"
        ))),
    }
}

/// `installOptions` as a JSON object (absent or `null`: none).
fn options_object(v: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request(
            "installOptions must be a JSON object",
        )),
    }
}

fn integration_type(w: &World, integration_id: &str) -> Result<String, ApiError> {
    w.integration_with_id(integration_id)
        .map(str::to_string)
        .ok_or_else(|| ApiError::not_found("integration_not_found", "no integration with this id"))
}

/// Reads `options` for `user`'s account of `integration`. `claim_check`
/// is the caller whose permissions claim must allow a re-connected
/// credential (none on the consent page, which has no token: its
/// `build-oauth` was checked).
fn target(
    w: &World,
    user: &str,
    integration: &str,
    options: &Map<String, Value>,
    claim_check: Option<&super::auth::Caller>,
) -> Result<Target, ApiError> {
    let text = |key: &str| match options.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    let external_id = text("externalId");
    let mine = || {
        w.user_credentials(user)
            .into_iter()
            .filter(move |c| c.integration == integration)
    };
    let Some(selected) = text("selectedCredentialId") else {
        if let Some(e) = &external_id {
            if mine().any(|c| c.external_id.as_deref() == Some(e.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "a {integration} credential with externalId {e:?} already exists for this user"
                )));
            }
        }
        return Ok(Target::New { external_id });
    };
    if external_id.is_some() {
        return Err(ApiError::bad_request(
            "externalId cannot be used together with selectedCredentialId",
        ));
    }
    // The SDK's reading: `ext:<x>` or anything not a UUID is an externalId.
    let found = match selected.strip_prefix("ext:") {
        None if is_uuid(&selected) => mine().find(|c| c.id.eq_ignore_ascii_case(&selected)),
        by_label => {
            let label = by_label.unwrap_or(&selected);
            mine().find(|c| c.external_id.as_deref() == Some(label))
        }
    };
    let c = found.ok_or_else(ApiError::credential_not_found)?;
    if claim_check.is_some_and(|caller| !caller.may_use(c)) {
        return Err(ApiError::insufficient_permission());
    }
    Ok(Target::Reconnect(c.id.clone()))
}

/// Creates or re-connects the account; returns its id.
fn connect_account(
    w: &mut World,
    user: &str,
    integration: &str,
    target: Target,
) -> Result<String, ApiError> {
    match target {
        Target::Reconnect(id) => {
            let c = w
                .creds
                .get_mut(&id)
                .ok_or_else(ApiError::credential_not_found)?;
            c.status = "VALID".to_string();
            Ok(id)
        }
        Target::New { external_id } => {
            let id = crate::keygen::uuid_v4();
            let mut c = CredentialFixture::new(&id, integration);
            c.external_id = external_id;
            c.provider_id = Some(format!("emulated-{}", &id[..8]));
            w.add_credential(user, &c)
                .map_err(|e| ApiError::not_found("unknown_user", e))?;
            Ok(id)
        }
    }
}

/// `GET /v2/projects/{p}/sdk/actions/build-oauth`: records the session and
/// answers the consent page's URL.
pub(crate) fn build_oauth(call: &Call<'_>) -> Handled {
    let integration_id = one_param(call, "integrationId")?;
    let session_id = one_param(call, "oauthMetaKeyId")?;
    if session_id.len() > MAX_SESSION_ID_BYTES
        || session_id.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(ApiError::bad_request(
            "oauthMetaKeyId must be at most 128 bytes, without `/` or control characters",
        ));
    }
    let options = match query_values(call.query, "installOptions").as_slice() {
        [] => Map::new(),
        [raw] => {
            let v: Value = serde_json::from_str(raw)
                .map_err(|_| ApiError::bad_request("installOptions is not valid JSON"))?;
            options_object(Some(&v))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "the `installOptions` query parameter may be given only once",
            ))
        }
    };
    let addr = call.local_addr.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the emulator does not know its own address",
        )
    })?;
    let mut w = lock(&call.state.world);
    let integration = integration_type(&w, &integration_id)?;
    // Refused now rather than on the consent page: the SDK shows
    // build-oauth's `message`.
    target(&w, call.user(), &integration, &options, Some(call.caller))?;
    let nonce = random_hex();
    w.installs.start(
        call.user(),
        &session_id,
        &integration,
        options,
        nonce.clone(),
    );
    Ok(Outcome::ok(
        json!({"redirectUrl": format!("http://{addr}{CONSENT_PATH}{nonce}")}),
        None,
    ))
}

/// `GET /projects/{p}/sdk/actions/oauth-nonce`: the popup's first page.
pub(crate) fn oauth_nonce(call: &Call<'_>) -> Handled {
    let origin = one_param(call, "originForPostMessage")?;
    if origin.len() > MAX_ORIGIN_BYTES {
        return Err(ApiError::bad_request("originForPostMessage is too long"));
    }
    // The origin is the caller's text: it enters the script only as a
    // JavaScript string literal that cannot end the script element.
    let script = format!(
        "try {{ if (window.opener) {{ window.opener.postMessage({{type: \"oauth-nonce-loaded\"}}, {}); }} }} catch (e) {{}}",
        js_string(&origin)
    );
    let page = html_page(
        "Connecting your account",
        "<p>Connecting your account&hellip;</p>",
        &script,
        false,
    );
    Ok(Outcome::raw(page, None))
}

/// `GET|POST /emulator/consent/{nonce}`: the provider's consent screen.
pub(crate) fn consent(state: &EmulatorState, method: &Method, nonce: &str) -> Handled {
    let mut w = lock(&state.world);
    let session =
        w.installs.by_nonce(nonce).cloned().ok_or_else(|| {
            ApiError::not_found("consent_not_found", "no consent is pending here")
        })?;
    let name = crate::admin::html_escape(&catalog::name(&session.integration));
    if *method == Method::GET {
        let body = format!(
            "<h1>Connect {name}</h1>\
             <p>The Paragon emulator stands in for {name}'s consent screen.</p>\
             <form method=\"post\" action=\"{CONSENT_PATH}{nonce}\">\
             <input type=\"hidden\" name=\"decision\" value=\"allow\">\
             <button type=\"submit\">Allow</button></form>",
            nonce = crate::admin::html_escape(&session.nonce),
        );
        // No human clicks in tests: the page consents as soon as it loads.
        let page = html_page("Consent", &body, "document.forms[0].submit();", true);
        return Ok(Outcome::raw(page, None));
    }
    let t = target(
        &w,
        &session.user,
        &session.integration,
        &session.options,
        None,
    )?;
    let id = connect_account(&mut w, &session.user, &session.integration, t)?;
    w.installs.complete(nonce, &id);
    let page = html_page(
        "Connected",
        &format!("<p>{name} is connected. This window closes itself.</p>"),
        "window.close();",
        false,
    );
    Ok(Outcome::raw(page, Some(id)))
}

/// `GET|DELETE /projects/{p}/sdk/actions/session-id/{id}`: the caller's
/// own session. GET answers `{"connectCredentialId"}` once the consent
/// was given, `{}` before (the SDK keeps polling on an answer without
/// `connectCredentialId`).
pub(crate) fn session(call: &Call<'_>, raw_id: &str) -> Handled {
    let id = percent_decode(raw_id, false)
        .ok_or_else(|| ApiError::bad_request("the session id in the path does not decode"))?;
    let not_found = || ApiError::not_found("session_not_found", "no such install session");
    let mut w = lock(&call.state.world);
    if *call.method == Method::DELETE {
        return if w.installs.remove(call.user(), &id) {
            Ok(Outcome::ok(json!({"success": true}), None))
        } else {
            Err(not_found())
        };
    }
    let s = w.installs.get(call.user(), &id).ok_or_else(not_found)?;
    let body = match &s.credential {
        Some(c) => json!({"connectCredentialId": c}),
        None => json!({}),
    };
    Ok(Outcome::ok(body, None))
}

/// `POST /projects/{p}/sdk/credentials`, body `{"integrationId",
/// "installOptions"?, "payload"?, "config"?, "code"?, ...}`: a new VALID
/// credential (or the re-connected one), answered as `GET
/// /sdk/credentials/{id}` shows it.
pub(crate) fn create_credential(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let integration_id = required_str(&body, "integrationId")?;
    let options = options_object(body.get("installOptions"))?;
    let mut w = lock(&call.state.world);
    let integration = integration_type(&w, integration_id)?;
    let t = target(&w, call.user(), &integration, &options, Some(call.caller))?;
    let id = connect_account(&mut w, call.user(), &integration, t)?;
    let c = w
        .credential(&id)
        .ok_or_else(ApiError::credential_not_found)?;
    Ok(Outcome::ok(
        credential_json(&call.state.project_id, c, false),
        Some(id),
    ))
}

/// A small HTML page whose one script runs under a nonce-based CSP.
/// `form_to_self`: the page may post a form to its own origin.
fn html_page(
    title: &str,
    body: &str,
    script: &str,
    form_to_self: bool,
) -> Response<crate::net::body::Body> {
    let nonce = random_hex();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head><body>{body}\
         <script nonce=\"{nonce}\">{script}</script></body></html>"
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; \
         frame-ancestors 'none'; form-action {}",
        if form_to_self { "'self'" } else { "'none'" }
    );
    let mut r = Response::new(full(html));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `s` as a JavaScript string literal that is safe inside a `<script>`
/// element: JSON's escaping, plus `<`, `>` and `&` as `\u` escapes (so no
/// `</script>` or `<!--` can appear) and the two line separators.
fn js_string(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_strings_cannot_end_the_script_element() {
        let hostile = "</script><script>alert(1)</script>\"'\\\u{2028}&";
        let lit = js_string(hostile);
        assert!(!lit.contains('<') && !lit.contains('>') && !lit.contains('&'));
        assert!(!lit.contains('\u{2028}'));
        // Still the same string to a JSON (and so JavaScript) reader.
        assert_eq!(serde_json::from_str::<String>(&lit).unwrap(), hostile);
    }

    #[test]
    fn html_text_is_escaped() {
        assert_eq!(
            crate::admin::html_escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
