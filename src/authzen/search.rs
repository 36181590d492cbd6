//! `POST /access/v1/search/resource` (which credentials may this member
//! use) and `POST /access/v1/search/subject` (which members may use this
//! credential), contract §14. Candidates come from what credgate can
//! enumerate (the user's live list; the principals of owner labels and
//! ACL grants, as the access review lists them), and each candidate pair
//! is kept only when the gateway's dry run allows it (`evaluate::decide`),
//! so deny rules, `member_products` and everything else apply: a result
//! pair is exactly a pair the gateway allows. Grants that cannot be
//! enumerated are named in `context`. Results are paginated as AuthZEN 1.0
//! says (`page.limit`, `page.token` → `page.next_token`, empty at the end).

use base64::Engine as _;
use serde_json::{json, Value};

use super::evaluate::{self, Member, Target};
use super::Failure;
use crate::gateway::State;

/// Largest page.
const MAX_LIMIT: u64 = 1000;

/// `POST /access/v1/search/resource`.
pub(crate) async fn resources(state: &State, body: &Value) -> Result<Value, Failure> {
    let member = evaluate::subject(body, true)
        .map_err(Failure::Malformed)?
        .ok_or_else(|| Failure::Malformed("`subject` is required".into()))?;
    let product = evaluate::action(body).map_err(Failure::Malformed)?;
    let kind = body
        .get("resource")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str);
    if kind != Some("credential") {
        return Err(Failure::Malformed(
            "`resource.type` must be \"credential\"".into(),
        ));
    }
    let page = Page::read(body)?;
    let generation = state.current.load_full();
    let snapshot = crate::gateway::list_of(state, &generation, &member.user)
        .await
        .map_err(|e| {
            Failure::Unavailable(format!("the credential list could not be loaded: {e}"))
        })?;
    let mut results = Vec::new();
    for c in snapshot.list.credentials.iter() {
        let target = Target::Credential(c.id.to_string(), None);
        let v = evaluate::decide(state, &member, product, &target, None, false).await?;
        if v.decision {
            results.push(json!({
                "type": "credential",
                "id": &*c.id,
                "properties": {"integration": &*c.integration, "externalId": c.external_id.as_deref()},
            }));
        }
    }
    let mut context = json!({});
    if let Some(claim) = &generation.config.policy.credentials_claim {
        context["not_enumerable"] = json!([format!(
            "credentials granted by a token's `{claim}` claim: only those in subject.properties.claims are counted"
        )]);
    }
    Ok(page.answer(results, context))
}

/// `POST /access/v1/search/subject`: the Connected User in
/// `resource.properties.user`.
pub(crate) async fn subjects(state: &State, body: &Value) -> Result<Value, Failure> {
    evaluate::subject(body, false).map_err(Failure::Malformed)?;
    let product = evaluate::action(body).map_err(Failure::Malformed)?;
    let r = body
        .get("resource")
        .and_then(Value::as_object)
        .ok_or_else(|| Failure::Malformed("`resource` must be an object".into()))?;
    if r.get("type").and_then(Value::as_str) != Some("credential") {
        return Err(Failure::Malformed(
            "`resource.type` must be \"credential\"".into(),
        ));
    }
    let id = r
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Malformed("`resource.id` must be a credential id".into()))
        .and_then(|id| evaluate::credential_id(id).map_err(Failure::Malformed))?;
    let user = r
        .get("properties")
        .and_then(|p| p.get("user"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_control))
        .ok_or_else(|| {
            Failure::Malformed("`resource.properties.user` must name the Connected User".into())
        })?
        .to_string();
    let page = Page::read(body)?;
    let generation = state.current.load_full();
    let snapshot = crate::gateway::list_of(state, &generation, &user)
        .await
        .map_err(|e| {
            Failure::Unavailable(format!("the credential list could not be loaded: {e}"))
        })?;
    let policy = &generation.config.policy;
    let found = match id.strip_prefix("ext:") {
        None => snapshot.list.find(&id),
        Some(label) => {
            let mut m = snapshot
                .list
                .credentials
                .iter()
                .filter(|c| c.external_id.as_deref() == Some(label));
            match (m.next(), m.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        }
    };
    // The principals the enumerable grants name (owner label, ACL).
    let mut candidates: Vec<String> = Vec::new();
    let mut every_member = false;
    if let Some(c) = found {
        if let (Some(t), Some(ext)) = (&policy.owner_external_id, c.external_id.as_deref()) {
            if let Some(p) = crate::policy::owner_of_label(t, ext) {
                candidates.push(p.to_string());
            }
        }
        for (g, principals) in policy.acl.grants() {
            if g.applies_in(&user) && g.allows(&c.id, c.external_id.as_deref(), &c.integration) {
                for p in principals {
                    if p == "*" {
                        every_member = true;
                    } else {
                        candidates.push(p.to_string());
                    }
                }
            }
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mut results = Vec::new();
    for principal in candidates {
        let member = Member {
            principal,
            user: user.clone(),
            admin: false,
            claims: serde_json::Map::new(),
        };
        let target = Target::Credential(id.clone(), None);
        let v = evaluate::decide(state, &member, product, &target, None, false).await?;
        if v.decision {
            results.push(json!({
                "type": "member",
                "id": member.principal,
                "properties": {"user": &user},
            }));
        }
    }
    let mut not_enumerable = Vec::new();
    if generation.config.auth.admin_claim.is_some() {
        not_enumerable.push("admins (by their token's admin claim)".to_string());
    }
    if every_member {
        not_enumerable.push("every member: an ACL grant for \"*\" covers this credential".into());
    }
    if let Some(claim) = &policy.credentials_claim {
        not_enumerable.push(format!("members whose token's `{claim}` claim lists it"));
    }
    if policy
        .rules
        .rules
        .iter()
        .any(|r| r.effect == crate::config::rules::Effect::Allow)
    {
        not_enumerable.push("members an allow rule permits".into());
    }
    if generation.config.authzen.pdp_url.is_some() {
        not_enumerable.push("members the decision point (authzen.pdp_url) permits".into());
    }
    Ok(page.answer(results, json!({"not_enumerable": not_enumerable})))
}

/// A search's `page`: where to start, how many, and the fingerprint of
/// the question the token belongs to.
struct Page {
    offset: usize,
    limit: Option<usize>,
    fingerprint: String,
}

impl Page {
    fn read(body: &Value) -> Result<Page, Failure> {
        let bad = |m: &str| Failure::Malformed(m.to_string());
        let page = match body.get("page") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(bad("`page` must be an object")),
        };
        let limit = match page.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_LIMIT).contains(&n) => Some(n as usize),
                _ => return Err(bad("`page.limit` must be an integer from 1 to 1000")),
            },
        };
        // Everything but the token must stay the same from page to page.
        let mut question = body.clone();
        if let Some(p) = question.get_mut("page").and_then(Value::as_object_mut) {
            p.remove("token");
        }
        let fingerprint =
            crate::config::sha256_hex(question.to_string().as_bytes())[..16].to_string();
        let offset = match page.get("token") {
            None | Some(Value::Null) => 0,
            Some(Value::String(t)) if t.is_empty() => 0,
            Some(Value::String(t)) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad("`page.token` is not one of this decision point's"))?;
                let (offset, of) = raw
                    .split_once('.')
                    .ok_or_else(|| bad("`page.token` is not one of this decision point's"))?;
                if of != fingerprint {
                    return Err(bad(
                        "`page.token` belongs to another question: keep everything but the token the same",
                    ));
                }
                offset
                    .parse()
                    .map_err(|_| bad("`page.token` is not one of this decision point's"))?
            }
            Some(_) => return Err(bad("`page.token` must be a string")),
        };
        Ok(Page {
            offset,
            limit,
            fingerprint,
        })
    }

    /// The page of `all` this request asked for.
    fn answer(&self, all: Vec<Value>, context: Value) -> Value {
        let total = all.len();
        let start = self.offset.min(total);
        let end = self
            .limit
            .map_or(total, |l| start.saturating_add(l).min(total));
        let next_token = if end < total {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{end}.{}", self.fingerprint))
        } else {
            String::new()
        };
        let results: Vec<Value> = all.into_iter().skip(start).take(end - start).collect();
        json!({
            "page": {"next_token": next_token, "count": results.len(), "total": total},
            "context": context,
            "results": results,
        })
    }
}
