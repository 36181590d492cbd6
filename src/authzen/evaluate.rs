//! `POST /access/v1/evaluation` and `/access/v1/evaluations` (contract
//! §14): each question becomes the request its action names (the Proxy
//! API of the credential's integration for `use` and `proxy`; ActionKit's
//! `GET /actions` for `actionkit`; `GET /sdk/credentials/{id}` for
//! `credentials`), judged by the gateway's own dry run for the subject as
//! a what-if caller. The answer is `decision` (true only when the gateway
//! would allow it), the §5a reason, the routed credential and the
//! decision's id; one audit record with `product = "authzen"` each.

use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Method, Request};
use serde_json::{json, Map, Value};

use super::{Failure, MAX_EVALUATIONS};
use crate::config::{is_uuid, Product};
use crate::gateway::judge::{judge, Judged};
use crate::gateway::{Generation, State};
use crate::net::body;

/// The subject: a member of a Connected User.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub principal: String,
    pub user: String,
    pub admin: bool,
    pub claims: Map<String, Value>,
}

/// The resource.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A credential id (lowercased UUID, or `ext:<label>`), with the
    /// integration `resource.properties.integration` names, if any.
    Credential(String, Option<String>),
    /// An integration type: the default credential of §5.
    Integration(String),
}

/// What one question or batch item decided.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub decision: bool,
    pub context: Value,
}

fn field<'v>(v: &'v Value, key: &str, what: &str) -> Result<&'v Map<String, Value>, String> {
    v.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("`{what}` must be an object"))
}

fn text<'v>(o: &'v Map<String, Value>, key: &str, what: &str) -> Result<&'v str, String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s),
        _ => Err(format!("`{what}.{key}` must be a non-empty string")),
    }
}

/// `subject`: `{type: "member", id: <principal>, properties: {user,
/// admin?, claims?}}`.
pub(crate) fn subject(q: &Value, with_id: bool) -> Result<Option<Member>, String> {
    let s = field(q, "subject", "subject")?;
    if s.get("type").and_then(Value::as_str) != Some("member") {
        return Err("`subject.type` must be \"member\"".into());
    }
    if !with_id {
        return Ok(None);
    }
    let principal = text(s, "id", "subject")?;
    let props = s
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("`subject.properties` must be an object with `user`")?;
    if let Some(k) = props
        .keys()
        .find(|k| !matches!(k.as_str(), "user" | "admin" | "claims"))
    {
        return Err(format!(
            "`subject.properties.{k}` is not known (user, admin, claims)"
        ));
    }
    let user = text(props, "user", "subject.properties")?;
    let admin = match props.get("admin") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`subject.properties.admin` must be a boolean".into()),
    };
    let claims = match props.get("claims") {
        None => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => return Err("`subject.properties.claims` must be an object".into()),
    };
    Ok(Some(Member {
        principal: principal.to_string(),
        user: user.to_string(),
        admin,
        claims,
    }))
}

/// `action`: `{name: "use"}` (the Proxy API) or a product of §3.
pub(crate) fn action(q: &Value) -> Result<Product, String> {
    let a = field(q, "action", "action")?;
    match text(a, "name", "action")? {
        "use" => Ok(Product::Proxy),
        name => match name.parse::<Product>() {
            Ok(p @ (Product::Proxy | Product::ActionKit | Product::Credentials)) => Ok(p),
            Ok(_) => Err(format!(
                "action `{name}` is not answered as an evaluation (use, proxy, actionkit, credentials)"
            )),
            Err(()) => Err(format!("action `{name}` is neither `use` nor a product")),
        },
    }
}

/// `resource`: `{type: "credential", id, properties: {integration?}}` or
/// `{type: "integration", id}`.
pub(crate) fn resource(q: &Value) -> Result<Target, String> {
    let r = field(q, "resource", "resource")?;
    let id = text(r, "id", "resource")?;
    let hint = match r.get("properties").and_then(|p| p.get("integration")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if integration_ok(s) => Some(s.clone()),
        Some(_) => {
            return Err("`resource.properties.integration` must be an integration type".into())
        }
    };
    match r.get("type").and_then(Value::as_str) {
        Some("credential") => Ok(Target::Credential(credential_id(id)?, hint)),
        Some("integration") if integration_ok(id) => Ok(Target::Integration(id.to_string())),
        Some("integration") => Err("`resource.id` must be an integration type".into()),
        _ => Err("`resource.type` must be \"credential\" or \"integration\"".into()),
    }
}

/// A credential reference as §5 takes it: a canonical UUID or `ext:<label>`.
pub(crate) fn credential_id(id: &str) -> Result<String, String> {
    match id.strip_prefix("ext:") {
        Some(label) if !label.is_empty() => Ok(id.to_string()),
        Some(_) => Err("`resource.id` ext: needs a label".into()),
        None if is_uuid(id) => Ok(id.to_ascii_lowercase()),
        None => Err("`resource.id` must be a credential UUID or ext:<externalId>".into()),
    }
}

fn integration_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// `POST /access/v1/evaluation`.
pub(crate) async fn single(
    state: &State,
    body: &Value,
    client_id: Option<&str>,
) -> Result<Value, Failure> {
    let (member, product, target) = question(body).map_err(Failure::Malformed)?;
    let v = decide(state, &member, product, &target, client_id, true).await?;
    Ok(json!({"decision": v.decision, "context": v.context}))
}

fn question(q: &Value) -> Result<(Member, Product, Target), String> {
    if q.get("context").is_some_and(|c| !c.is_object()) {
        return Err("`context` must be an object".into());
    }
    let member = subject(q, true)?.ok_or("`subject` is required")?;
    Ok((member, action(q)?, resource(q)?))
}

/// `POST /access/v1/evaluations`: the top-level `subject`, `action`,
/// `resource` and `context` are defaults each item may override; without
/// items it is one evaluation. Every item is read before any is decided
/// (a malformed one is a 400 for the whole batch).
pub(crate) async fn batch(
    state: &State,
    body: &Value,
    client_id: Option<&str>,
) -> Result<Value, Failure> {
    let items = match body.get("evaluations") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(Failure::Malformed("`evaluations` must be an array".into())),
    };
    if items.is_empty() {
        return single(state, body, client_id).await;
    }
    if items.len() > MAX_EVALUATIONS {
        return Err(Failure::Malformed(format!(
            "at most {MAX_EVALUATIONS} evaluations in one request"
        )));
    }
    let semantic = match body
        .get("options")
        .map(|o| o.get("evaluations_semantic"))
    {
        None | Some(None) => "execute_all",
        Some(Some(Value::String(s)))
            if matches!(
                s.as_str(),
                "execute_all" | "deny_on_first_deny" | "permit_on_first_permit"
            ) =>
        {
            s.as_str()
        }
        Some(_) => {
            return Err(Failure::Malformed(
                "`options.evaluations_semantic` must be execute_all, deny_on_first_deny or permit_on_first_permit".into(),
            ))
        }
    };
    if body.get("options").is_some_and(|o| !o.is_object()) {
        return Err(Failure::Malformed("`options` must be an object".into()));
    }
    let mut questions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(item) = item.as_object() else {
            return Err(Failure::Malformed(format!(
                "evaluations[{i}] must be an object"
            )));
        };
        let mut merged = Map::new();
        for key in ["subject", "action", "resource", "context"] {
            if let Some(v) = item.get(key).or_else(|| body.get(key)) {
                merged.insert(key.into(), v.clone());
            }
        }
        let q = question(&Value::Object(merged))
            .map_err(|m| Failure::Malformed(format!("evaluations[{i}]: {m}")))?;
        questions.push(q);
    }
    let mut out = Vec::with_capacity(questions.len());
    for (member, product, target) in &questions {
        let v = match decide(state, member, *product, target, client_id, true).await {
            Ok(v) => v,
            // An item that cannot be decided is a denial with its error
            // (AuthZEN: decisions default to closed).
            Err(Failure::Unavailable(m)) => Verdict {
                decision: false,
                context: json!({"error": {"status": 503, "message": m}}),
            },
            Err(Failure::Malformed(m)) => Verdict {
                decision: false,
                context: json!({"error": {"status": 400, "message": m}}),
            },
        };
        let decision = v.decision;
        out.push(json!({"decision": v.decision, "context": v.context}));
        match (semantic, decision) {
            ("deny_on_first_deny", false) | ("permit_on_first_permit", true) => break,
            _ => {}
        }
    }
    Ok(json!({"evaluations": out}))
}

/// Decides one question with the gateway's dry run.
pub(crate) async fn decide(
    state: &State,
    member: &Member,
    product: Product,
    target: &Target,
    client_id: Option<&str>,
    audit: bool,
) -> Result<Verdict, Failure> {
    let started = Instant::now();
    let generation = state.current.load_full();
    let identity = generation
        .auth
        .what_if(
            &member.user,
            Some(&member.principal),
            member.admin,
            member.claims.clone(),
        )
        .map_err(|e| Failure::Malformed(format!("subject: {e}")))?;
    // The list is loaded as for any caller of this user (the shared
    // cache): it picks the route's integration, and a list that cannot be
    // loaded is a 503, never a decision.
    let snapshot = crate::gateway::list_of(state, &generation, &member.user)
        .await
        .map_err(|e| {
            Failure::Unavailable(format!("the credential list could not be loaded: {e}"))
        })?;
    let req = synthetic(&generation, &snapshot.list, product, target)?;
    let judged = judge(state, req, Some(Arc::new(identity))).await;
    let failed = judged.status >= 500;
    let decision = !judged.refused && judged.decision == "allowed";
    if audit {
        write_audit(&generation, &judged, decision, failed, client_id, started);
    }
    if failed {
        return Err(Failure::Unavailable(format!(
            "the decision could not be made ({})",
            judged.reason
        )));
    }
    let mut context = json!({"reason": judged.reason, "decision_id": &judged.decision_id});
    if let (true, Some(c)) = (decision, &judged.credential) {
        context["credential"] = Value::from(&*c.id);
    }
    Ok(Verdict { decision, context })
}

/// The request the question stands for.
fn synthetic(
    generation: &Generation,
    list: &crate::paragon::credentials::CredentialList,
    product: Product,
    target: &Target,
) -> Result<Request<body::Body>, Failure> {
    let project = &generation.config.paragon.project_id;
    let (path, named) = match (product, target) {
        (Product::Proxy, Target::Integration(t)) => {
            (format!("/projects/{project}/sdk/proxy/{t}/"), None)
        }
        (Product::Proxy, Target::Credential(id, hint)) => {
            let integration = integration_of(list, id, hint.as_deref())?;
            (
                format!("/projects/{project}/sdk/proxy/{integration}/"),
                Some(id),
            )
        }
        (Product::ActionKit, Target::Credential(id, _)) => {
            (format!("/projects/{project}/actions"), Some(id))
        }
        (Product::Credentials, Target::Credential(id, _)) if !id.starts_with("ext:") => {
            (format!("/projects/{project}/sdk/credentials/{id}"), None)
        }
        (p, _) => {
            return Err(Failure::Malformed(format!(
                "action `{}` does not take this resource",
                p.as_str()
            )))
        }
    };
    let mut req = Request::new(body::full(bytes::Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = path
        .parse()
        .map_err(|_| Failure::Malformed("the resource does not make a request path".into()))?;
    if let Some(id) = named {
        let v = HeaderValue::from_str(id)
            .map_err(|_| Failure::Malformed("`resource.id` is not visible ASCII".into()))?;
        req.headers_mut().insert("x-paragon-credential", v);
    }
    Ok(req)
}

/// The integration whose Proxy API `use` of credential `id` is judged on:
/// the one `resource.properties.integration` names, else the credential's
/// own (an `ext:` label's, when its accounts are of one integration).
fn integration_of(
    list: &crate::paragon::credentials::CredentialList,
    id: &str,
    hint: Option<&str>,
) -> Result<String, Failure> {
    if let Some(h) = hint {
        return Ok(h.to_string());
    }
    // An id no list holds is refused whatever the route's integration.
    const NONE: &str = "unknown";
    let Some(label) = id.strip_prefix("ext:") else {
        return Ok(list
            .find(id)
            .map_or(NONE.to_string(), |c| c.integration.to_string()));
    };
    let mut of: Vec<&str> = list
        .credentials
        .iter()
        .filter(|c| c.external_id.as_deref() == Some(label))
        .map(|c| &*c.integration)
        .collect();
    of.sort_unstable();
    of.dedup();
    match of.as_slice() {
        [] => Ok(NONE.to_string()),
        [one] => Ok(one.to_string()),
        _ => Err(Failure::Malformed(
            "the label names accounts of several integrations: give resource.properties.integration".into(),
        )),
    }
}

/// One audit record per evaluation (contract §14): the dry run's record,
/// as `product = "authzen"`, with what was answered.
fn write_audit(
    generation: &Generation,
    judged: &Judged,
    decision: bool,
    failed: bool,
    client_id: Option<&str>,
    started: Instant,
) {
    let r = &judged.record;
    let s = |k: &str| r.get(k).and_then(Value::as_str);
    let record = crate::audit::Record {
        request_id: &judged.decision_id,
        decision_id: &judged.decision_id,
        client_request_id: client_id,
        principal: s("principal").unwrap_or_default(),
        user: s("user").unwrap_or_default(),
        product: "authzen",
        integration: s("integration").unwrap_or_default(),
        requested: s("requested").unwrap_or_default(),
        credential: if decision {
            s("credential").unwrap_or_default()
        } else {
            ""
        },
        decision: match (decision, failed) {
            (true, _) => "allowed",
            (false, true) => "failed",
            (false, false) => "refused",
        },
        reason: judged.reason,
        code: s("code"),
        grant: r
            .get("grant")
            .and_then(Value::as_u64)
            .and_then(|g| usize::try_from(g).ok()),
        grant_principal: s("grant_principal"),
        scope: s("scope"),
        rule: s("rule"),
        shadow_rules: s("shadow_rules"),
        forwarded: false,
        status: if failed { 503 } else { 200 },
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        trace_id: s("trace_id"),
        ..crate::audit::Record::default()
    };
    generation.audit.write(&record);
}
