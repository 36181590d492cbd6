//! Connecting accounts from Paragon's Connect SDK (contract §13): the
//! install routes' `userToken` query parameter, authenticated as a bearer
//! token on those routes only and replaced upstream by credgate's own
//! token; a member's `installOptions` judged (the account it re-connects is
//! decided like a named credential, a new account's `externalId` must be
//! the member's own label, credgate picks a free one when none is given);
//! and the query or body Paragon gets. 400 `bad_request`, 401, 403
//! `credential_forbidden` (reason `owner_label_mismatch`).
//!
//! This room knows the install flow's parameters and nothing of how the
//! SDK drives the flow (popups, polling): those are ordinary routes.

use std::borrow::Cow;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::request::Parts;

use super::exchange::Ctx;
use super::path::percent_decode;
use crate::auth::{AuthError, Identity};
use crate::error::{GatewayError, Refused};
use crate::paragon::credentials::{parse_uuid, CredentialList, Uuid};
use crate::paragon::jsonbody::{Kind, TopObject};
use crate::paragon::routes::{self, Operation};
use crate::policy::{member_label, owns_label, Requested};

/// The query parameter that carries the SDK user's token.
const USER_TOKEN: &str = "userToken";
/// The query parameter (build-oauth) or body field (`POST
/// /sdk/credentials`) that carries the install's options.
const INSTALL_OPTIONS: &str = "installOptions";

/// What a member's install query may carry: what SDK 2.x sends. Anything
/// else is a door credgate does not understand (Paragon's query parser
/// reads `installOptions[externalId]=...` as an object), so 400.
const MEMBER_QUERY: &[&str] = &[
    "action",
    "endUserSuppliedValues",
    "parameters",
    USER_TOKEN,
    "integrationId",
    "redirectUrl",
    "originForPostMessage",
    "isPreviewMode",
    INSTALL_OPTIONS,
    SESSION_ID,
];

/// What a member's `POST /sdk/credentials` body may carry: what SDK 2.x
/// sends.
const MEMBER_BODY: &[&str] = &[
    "integrationId",
    "config",
    "payload",
    INSTALL_OPTIONS,
    "code",
    "redirectUrl",
    "integrationOptions",
];

/// `build-oauth`'s query parameter that carries the install session's id
/// (random, chosen by the SDK, which then polls `session-id/{id}`).
const SESSION_ID: &str = "oauthMetaKeyId";

const UNPARSABLE: GatewayError = GatewayError::BadRequest("the query string does not parse");

/// One `name=value` pair of a query, its name decoded.
struct Param<'q> {
    name: String,
    raw: &'q str,
    value: &'q str,
}

/// The pairs of a query (`+` is a space, `%XX` an octet, as a form
/// decoder reads them); a name that does not decode to UTF-8 is 400.
fn params(query: &str) -> Result<Vec<Param<'_>>, GatewayError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|raw| {
            let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
            Ok(Param {
                name: decode(name)?.into_owned(),
                raw,
                value,
            })
        })
        .collect()
}

fn decode(s: &str) -> Result<Cow<'_, str>, GatewayError> {
    if !s.contains(['%', '+']) {
        return Ok(Cow::Borrowed(s));
    }
    let spaced = s.replace('+', " ");
    let bytes = percent_decode(spaced.as_bytes()).ok_or(UNPARSABLE)?;
    String::from_utf8(bytes.into_owned())
        .map(Cow::Owned)
        .map_err(|_| UNPARSABLE)
}

/// `userToken` in any letter case: every spelling is replaced upstream.
fn is_user_token(name: &str) -> bool {
    name.eq_ignore_ascii_case(USER_TOKEN)
}

/// Before authentication: on `build-oauth` and `oauth-nonce`, the
/// `userToken` query parameter authenticates as a bearer token (a popup
/// navigation sends no header). Given twice, or another token than
/// `Authorization`'s: 401. Without `Authorization`, it becomes the
/// request's bearer token (and, like any, never leaves credgate).
pub(super) fn adopt_user_token(parts: &mut Parts) -> Result<(), GatewayError> {
    if !routes::takes_user_token(&parts.method, parts.uri.path()) {
        return Ok(());
    }
    let Some(query) = parts.uri.query() else {
        return Ok(());
    };
    let unauthenticated = |m| GatewayError::Unauthenticated(AuthError::UserToken(m));
    let all = params(query)?;
    let mut tokens = all.iter().filter(|p| is_user_token(&p.name));
    let Some(first) = tokens.next() else {
        return Ok(());
    };
    if tokens.next().is_some() {
        return Err(unauthenticated("is given more than once"));
    }
    let token = decode(first.value)?;
    match crate::auth::bearer(&parts.headers) {
        Ok(b) if b == token => Ok(()),
        Ok(_) => Err(unauthenticated("is another token than Authorization's")),
        Err(AuthError::Missing) => {
            let v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| unauthenticated("is not visible ASCII"))?;
            parts.headers.insert(AUTHORIZATION, v);
            Ok(())
        }
        Err(e) => Err(GatewayError::Unauthenticated(e)),
    }
}

/// A member's `installOptions`, as judged.
#[derive(Debug, Default)]
pub(super) struct InstallInput {
    /// `installOptions` as sent (a JSON object), when given.
    options: Option<Vec<u8>>,
    /// `selectedCredentialId`: the account re-connected.
    pub selected: Option<Requested>,
    /// `externalId`: a new account's label.
    external_id: Option<String>,
    /// `selectedConfigurationId`.
    configuration: Option<String>,
    /// The integration the install is for (`integrationId`), when a UUID.
    integration_id: Option<Uuid>,
}

/// A member's install inputs (contract §13): the query of `build-oauth`
/// and `oauth-nonce` (only the SDK's parameters, each once), the JSON
/// body of `POST /sdk/credentials`, of `POST
/// /sdk/credentials/{id}/complete-setup` and of `PATCH`/`PUT`/`POST
/// /sdk/credentials/{id}` (`Operation::carries_install_body`). Only
/// members' (admins' options pass unchanged); `None` on other routes. 400
/// for anything malformed.
pub(super) fn parse(
    op: Operation<'_>,
    query: &str,
    body: Option<&TopObject<'_>>,
) -> Result<Option<InstallInput>, GatewayError> {
    match op {
        Operation::InstallStart | Operation::InstallNonce => from_query(query).map(Some),
        _ if op.carries_install_body() => from_body(body).map(Some),
        _ => Ok(None),
    }
}

fn from_query(query: &str) -> Result<InstallInput, GatewayError> {
    let all = params(query)?;
    let mut input = InstallInput::default();
    for (i, p) in all.iter().enumerate() {
        let known = is_user_token(&p.name) || MEMBER_QUERY.contains(&p.name.as_str());
        if !known {
            return Err(GatewayError::BadRequest(
                "the install query carries a parameter credgate does not know",
            ));
        }
        if all[..i].iter().any(|q| q.name == p.name) {
            return Err(GatewayError::BadRequest(
                "an install query parameter is given more than once",
            ));
        }
        match p.name.as_str() {
            INSTALL_OPTIONS => {
                let json = decode(p.value)?;
                input.options = Some(json.as_bytes().to_vec());
            }
            "integrationId" => input.integration_id = parse_uuid(&decode(p.value)?),
            _ => {}
        }
    }
    judge_options(input)
}

fn from_body(body: Option<&TopObject<'_>>) -> Result<InstallInput, GatewayError> {
    let Some(doc) = body else {
        return Err(GatewayError::BadRequest("the body must be a JSON object"));
    };
    // Only the fields the SDK sends (`_oauthCallback`, `completeInstall`),
    // each once: another top-level field is a door credgate does not judge.
    for (i, m) in doc.members.iter().enumerate() {
        if !MEMBER_BODY.contains(&&*m.key) || doc.members[..i].iter().any(|e| e.key == m.key) {
            return Err(GatewayError::BadRequest(
                "the account's body carries a field credgate does not know, or one twice",
            ));
        }
    }
    let mut input = InstallInput::default();
    for (key, into_options) in [(INSTALL_OPTIONS, true), ("integrationId", false)] {
        let found: Vec<_> = doc.all(key).collect();
        match found.as_slice() {
            [] => {}
            [m] if into_options && m.kind == Kind::Object => {
                input.options = Some(doc.raw_value(m).to_vec());
            }
            [m] if into_options && m.kind == Kind::Null => {}
            [m] if !into_options => {
                input.integration_id = doc.string_value(m).and_then(|v| parse_uuid(&v));
            }
            _ => {
                return Err(GatewayError::BadRequest(
                    "installOptions must be one JSON object",
                ))
            }
        }
    }
    judge_options(input)
}

/// Reads `selectedCredentialId`, `externalId`, `selectedConfigurationId`
/// from the options object: each at most once, a string or null.
fn judge_options(mut input: InstallInput) -> Result<InstallInput, GatewayError> {
    let Some(raw) = &input.options else {
        return Ok(input);
    };
    let malformed = || {
        GatewayError::BadRequest(
            "installOptions must be a JSON object whose selectedCredentialId, externalId and selectedConfigurationId are strings, each given once",
        )
    };
    let doc = TopObject::parse(raw).map_err(|_| malformed())?;
    // JSON's `__proto__` is a member like any other, but merged into an
    // object with JavaScript's `Object.assign` it sets the prototype: a
    // label or an account named there would be read without being judged
    // here.
    if doc.members.iter().any(|m| m.key == "__proto__") {
        return Err(GatewayError::BadRequest(
            "installOptions must not carry __proto__",
        ));
    }
    let field = |key: &str| -> Result<Option<String>, GatewayError> {
        match doc.all(key).collect::<Vec<_>>().as_slice() {
            [] => Ok(None),
            [m] if m.kind == Kind::Null => Ok(None),
            [m] if m.kind == Kind::String => doc.string_value(m).map(Some).ok_or_else(malformed),
            _ => Err(malformed()),
        }
    };
    let selected = field("selectedCredentialId")?;
    input.external_id = field("externalId")?;
    input.configuration = field("selectedConfigurationId")?;
    if selected.is_some() && input.external_id.is_some() {
        // The SDK refuses the pair itself: a new label on an account
        // re-connected is no install credgate can judge.
        return Err(GatewayError::BadRequest(
            "installOptions names both selectedCredentialId and externalId",
        ));
    }
    input.selected = selected.as_deref().map(Requested::parse).transpose()?;
    Ok(input)
}

/// The label a member's new account gets (contract §13), when
/// `policy.owner_external_id` is set and no account is re-connected: the
/// one given, when it is the member's label L or starts with `L/` (else
/// 403 `owner_label_mismatch`); none given, the first of L, `L/2`, `L/3`,
/// ... that no account of the integration in the user's list carries.
/// `Some` only when credgate sets it.
pub(super) fn label(
    ctx: &Ctx<'_>,
    list: Option<&CredentialList>,
    input: &InstallInput,
) -> Result<Option<String>, GatewayError> {
    let Some(template) = ctx.cfg.policy.owner_external_id.as_deref() else {
        return Ok(None);
    };
    if input.selected.is_some() {
        return Ok(None);
    }
    if input.external_id.is_some() {
        return check_label(ctx, input).map(|()| None);
    }
    let own = member_label(template, &ctx.identity.principal).ok_or(
        GatewayError::CredentialForbidden(Refused::OwnerLabelMismatch),
    )?;
    let taken = |label: &str| {
        list.is_some_and(|l| {
            l.credentials.iter().any(|c| {
                c.external_id.as_deref() == Some(label)
                    && (input.integration_id.is_none() || c.integration_id == input.integration_id)
            })
        })
    };
    if !taken(&own) {
        return Ok(Some(own));
    }
    (2u32..)
        .map(|n| format!("{own}/{n}"))
        .find(|l| !taken(l))
        .map(Some)
        .ok_or(GatewayError::BadRequest("no free account label"))
}

/// A label given in the options (`externalId`), under
/// `policy.owner_external_id`: the member's label L or one starting with
/// `L/`, else 403 `owner_label_mismatch`. None given, or no template: Ok.
pub(super) fn check_label(ctx: &Ctx<'_>, input: &InstallInput) -> Result<(), GatewayError> {
    match (&ctx.cfg.policy.owner_external_id, &input.external_id) {
        (Some(template), Some(given)) if !owns_label(template, &ctx.identity.principal, given) => {
            Err(GatewayError::CredentialForbidden(
                Refused::OwnerLabelMismatch,
            ))
        }
        _ => Ok(()),
    }
}

/// `selectedConfigurationId` with the account re-connected: one of its
/// configurations, else 403 (as `X-Paragon-Configuration-Id`, §5).
pub(super) fn check_configuration(
    input: &InstallInput,
    configurations: Option<&[Uuid]>,
) -> Result<(), GatewayError> {
    let Some(id) = &input.configuration else {
        return Ok(());
    };
    let known = parse_uuid(id).is_some_and(|id| configurations.is_some_and(|c| c.contains(&id)));
    if known {
        Ok(())
    } else {
        Err(GatewayError::CredentialForbidden(Refused::NotInList))
    }
}

/// Whether the credential re-connected is of the install's integration.
pub(super) fn same_integration(input: &InstallInput, integration_id: Option<Uuid>) -> bool {
    input.integration_id.is_none() || input.integration_id == integration_id
}

/// The options with `externalId` set to `label`.
fn options_with(input: Option<&InstallInput>, label: &str) -> Vec<u8> {
    let given = input.and_then(|i| i.options.as_deref()).unwrap_or(b"{}");
    match TopObject::parse(given) {
        Ok(doc) => doc.with_string("externalId", label),
        Err(_) => TopObject::parse(b"{}")
            .expect("an empty object parses")
            .with_string("externalId", label),
    }
}

/// The install session id Paragon gets for the id a member's SDK chose
/// (decided here; contract §13 leaves it open). Members of one Connected
/// User share Paragon's user, so a session id is all that tells one
/// member's install from another's: credgate binds it to the member by
/// sending Paragon a digest of (user, principal, id) instead, on
/// `build-oauth` and on every `session-id/{id}`. Another member who learns
/// the id reaches only the digest of their own principal: a session that
/// does not exist. Collision resistance is what binds (every member's id
/// goes through the same digest, so no secret is needed and replicas
/// agree). 32 lowercase hex digits.
///
/// In passthrough mode every member's principal is the Connected User
/// (`sub`): what tells members apart there is their permissions claim, so
/// the digest is of (user, permissions claim, id). A member whose claim
/// changes mid-install (a token re-issued with other accounts) no longer
/// finds the session (404, closed); two members with the same claim are
/// the same caller to credgate and to Paragon.
pub(super) fn bound_session_id(identity: &Identity, id: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let (domain, who): (&[u8], &str) = match &identity.permissions_key {
        None => (b"credgate install session v1", &identity.principal),
        Some(claim) => (b"credgate install session v1 passthrough", claim),
    };
    ctx.update(domain);
    for part in [identity.user.as_bytes(), who.as_bytes(), id] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let sum = ctx.finish();
    let mut out = String::with_capacity(32);
    for b in &sum.as_ref()[..16] {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The path Paragon gets for a member's `session-id/{id}`: the id bound to
/// the member ([`bound_session_id`]). An id that does not decode is 400.
pub(super) fn upstream_session_path(
    path: &str,
    identity: &Identity,
) -> Result<String, GatewayError> {
    let (head, id) = path.rsplit_once('/').ok_or(GatewayError::BadRequest(
        "the install session id does not parse",
    ))?;
    let id = percent_decode(id.as_bytes()).ok_or(GatewayError::BadRequest(
        "the install session id does not decode",
    ))?;
    Ok(format!("{head}/{}", bound_session_id(identity, &id)))
}

/// The query Paragon gets on `build-oauth` and `oauth-nonce`: every
/// `userToken` spelling replaced by one `userToken` carrying `token`, the
/// upstream token (minted, or the caller's in passthrough),
/// `installOptions` with the label credgate set, and for a member
/// (`member`) the session id bound to them ([`bound_session_id`]); the
/// rest as sent.
pub(super) fn upstream_query(
    query: &str,
    token: &str,
    input: Option<&InstallInput>,
    label: Option<&str>,
    member: Option<&Identity>,
) -> Result<String, GatewayError> {
    let all = params(query)?;
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(all.len() + 1);
    let mut had_token = false;
    let mut had_options = false;
    for p in &all {
        if is_user_token(&p.name) {
            had_token = true;
        } else if let (SESSION_ID, Some(who)) = (p.name.as_str(), member) {
            let id = bound_session_id(who, decode(p.value)?.as_bytes());
            out.push(Cow::Owned(format!("{SESSION_ID}={id}")));
        } else if p.name == INSTALL_OPTIONS && label.is_some() {
            had_options = true;
            let value = options_with(input, label.unwrap_or_default());
            out.push(Cow::Owned(format!(
                "{INSTALL_OPTIONS}={}",
                form_encode(&value)
            )));
        } else {
            out.push(Cow::Borrowed(p.raw));
        }
    }
    if let (Some(l), false) = (label, had_options) {
        let value = options_with(input, l);
        out.push(Cow::Owned(format!(
            "{INSTALL_OPTIONS}={}",
            form_encode(&value)
        )));
    }
    if had_token {
        out.push(Cow::Owned(format!(
            "{USER_TOKEN}={}",
            form_encode(token.as_bytes())
        )));
    }
    Ok(out.join("&"))
}

/// The body Paragon gets on `POST /sdk/credentials` when credgate set the
/// label: `installOptions.externalId` set, the rest as sent.
pub(super) fn upstream_body(
    raw: &[u8],
    input: Option<&InstallInput>,
    label: &str,
) -> Option<Bytes> {
    let doc = TopObject::parse(raw).ok()?;
    let options = options_with(input, label);
    Some(Bytes::from(doc.with_raw(INSTALL_OPTIONS, &options)))
}

/// `application/x-www-form-urlencoded` percent-encoding: every octet but
/// the unreserved ones.
fn form_encode(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(query: &str) -> Result<InstallInput, GatewayError> {
        from_query(query)
    }

    #[test]
    fn a_member_query_carries_only_the_sdks_parameters_once() {
        let ok = "action=salesforce&userToken=a.b.c&integrationId=5b9c2e1a-1111-4222-8333-444455556666&installOptions=%7B%22externalId%22%3A%22alice%22%7D&oauthMetaKeyId=abc";
        let i = member(ok).unwrap();
        assert_eq!(i.external_id.as_deref(), Some("alice"));
        assert!(i.integration_id.is_some());
        for bad in [
            "installOptions[externalId]=bob",
            "installOptions%5BexternalId%5D=bob",
            "selectedCredentialId=x",
            "installOptions=%7B%7D&installOptions=%7B%7D",
            "action=a&action=b",
            "installOptions=not-json",
            "installOptions=%5B%5D",
            "installOptions=%7B%22externalId%22%3A1%7D",
            "installOptions=%7B%22externalId%22%3A%22a%22%2C%22externalId%22%3A%22b%22%7D",
            "installOptions=%7B%22externalId%22%3A%22a%22%2C%22selectedCredentialId%22%3A%22ext%3Ab%22%7D",
            "installOptions=%7B%22selectedCredentialId%22%3A%22bob%22%7D",
            "%FF=1",
        ] {
            assert!(member(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_upstream_query_carries_one_token_and_the_label() {
        let q = "a=1&userToken=CALLER&UserToken=CALLER2&installOptions=%7B%22x%22%3Atrue%7D";
        let input = member("installOptions=%7B%22x%22%3Atrue%7D").unwrap();
        let out = upstream_query(q, "MINTED", Some(&input), Some("alice/2"), None).unwrap();
        assert!(!out.contains("CALLER"), "{out}");
        assert!(out.ends_with("&userToken=MINTED"), "{out}");
        let options = out
            .split('&')
            .find_map(|p| p.strip_prefix("installOptions="))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&decode(options).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"externalId": "alice/2", "x": true}));
        // No label set: the options go as sent.
        let out = upstream_query(q, "MINTED", Some(&input), None, None).unwrap();
        assert_eq!(
            out,
            "a=1&installOptions=%7B%22x%22%3Atrue%7D&userToken=MINTED"
        );
    }

    fn who(user: &str, principal: &str) -> Identity {
        Identity::test_member(user, principal)
    }

    #[test]
    fn a_members_install_session_id_is_bound_to_her() {
        let alice = who("acme", "alice");
        let id = bound_session_id(&alice, b"k3x9q1");
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(id, bound_session_id(&who("acme", "alice"), b"k3x9q1"));
        // Another member, user or id: another session.
        for other in [
            bound_session_id(&who("acme", "bob"), b"k3x9q1"),
            bound_session_id(&who("other", "alice"), b"k3x9q1"),
            bound_session_id(&alice, b"k3x9q2"),
            // The parts are length-prefixed: no two splits share an input.
            bound_session_id(&who("acmea", "lice"), b"k3x9q1"),
            bound_session_id(&who("acme", "alicek"), b"3x9q1"),
        ] {
            assert_ne!(id, other);
        }
        // The query and the path carry the same bound id, whatever the
        // encoding of the one sent.
        let q = "userToken=T&oauthMetaKeyId=k3x%39q1&integrationId=i";
        let out = upstream_query(q, "MINTED", None, None, Some(&alice)).unwrap();
        assert_eq!(
            out,
            format!("oauthMetaKeyId={id}&integrationId=i&userToken=MINTED")
        );
        let path =
            upstream_session_path("/projects/p/sdk/actions/session-id/k3x9q1", &alice).unwrap();
        assert_eq!(path, format!("/projects/p/sdk/actions/session-id/{id}"));
        assert!(upstream_session_path("/projects/p/sdk/actions/session-id/%ZZ", &alice).is_err());
        // An admin's (no member given) goes as sent.
        let out = upstream_query(q, "MINTED", None, None, None).unwrap();
        assert!(out.starts_with("oauthMetaKeyId=k3x%39q1&"), "{out}");
    }

    /// In passthrough mode every member's principal is `sub`: the id is
    /// bound to the permissions claim instead.
    #[test]
    fn a_passthrough_members_session_id_is_bound_to_her_claim() {
        let scoped = |claim: &str| {
            let mut i = who("acme", "acme");
            i.permissions_key = Some(claim.into());
            i
        };
        let alice = bound_session_id(&scoped(r#"{"a":1}"#), b"k3x9q1");
        assert_eq!(alice, bound_session_id(&scoped(r#"{"a":1}"#), b"k3x9q1"));
        for other in [
            bound_session_id(&scoped(r#"{"b":1}"#), b"k3x9q1"),
            bound_session_id(&scoped(r#"{"a":1}"#), b"k3x9q2"),
            // Not the mint-mode digest of a member named like the claim.
            bound_session_id(&who("acme", r#"{"a":1}"#), b"k3x9q1"),
        ] {
            assert_ne!(alice, other);
        }
    }

    #[test]
    fn a_proto_member_in_the_options_is_refused() {
        for raw in [
            &br#"{"installOptions":{"__proto__":{"externalId":"alice"}}}"#[..],
            br#"{"installOptions":{"\u005f_proto__":{"selectedCredentialId":"x"}}}"#,
        ] {
            let doc = TopObject::parse(raw).unwrap();
            assert!(
                matches!(from_body(Some(&doc)), Err(GatewayError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // A member named like it, elsewhere, is no prototype.
        let doc = TopObject::parse(br#"{"installOptions":{"a":{"__proto__":1}}}"#).unwrap();
        assert!(from_body(Some(&doc)).is_ok());
    }

    #[test]
    fn the_body_gets_the_label_and_keeps_the_rest() {
        let raw = br#"{"integrationId":"i","installOptions":{"allowMultipleCredentials":true}}"#;
        let doc = TopObject::parse(raw).unwrap();
        let input = from_body(Some(&doc)).unwrap();
        let out = upstream_body(raw, Some(&input), "alice").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"integrationId": "i", "installOptions": {"externalId": "alice", "allowMultipleCredentials": true}})
        );
        let raw = br#"{"integrationId":"i"}"#;
        let out = upstream_body(raw, None, "alice").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["installOptions"],
            serde_json::json!({"externalId": "alice"})
        );
        for bad in [
            &br#"{"installOptions":{},"installOptions":{}}"#[..],
            br#"{"integrationId":"i","externalId":"bob"}"#,
            br#"{"integrationId":"i","integrationId":"j"}"#,
        ] {
            assert!(from_body(Some(&TopObject::parse(bad).unwrap())).is_err());
        }
    }
}
