//! Evaluating the rules of `policy.rules_file` (contract §5b) for one
//! request: allow rules widen a member's permit, deny rules refuse what
//! the request touches (admins included), limit rules pick the requests a
//! per-principal bucket counts (§5c), shadow rules are only recorded.
//!
//! Fail closed: a rule whose evaluation errors (a missing claim, a claim of
//! the wrong type, a non-boolean result) counts as matching for deny and
//! limit rules and as not matching for allow rules. A rule that reads
//! `credential` is about the credential a request uses: it is not
//! evaluated where none is used (a listing, a call that routes none), and
//! errors (so denies) where one is used that credgate does not know (an
//! admin naming none, for Paragon to pick).
//!
//! Only the variables a rule reads are built, each once per evaluation
//! scope; results of rules that read nothing that varies between requests
//! of one caller on one kind of route are memoized in the caller's
//! [`RuleMemo`] (it lives as long as the verified token's cache entry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::Value;

use crate::auth::{Identity, Role};
use crate::config::rules::{Effect, Rule, Rules};
use crate::paragon::credentials::Credential;

/// What a rule sees of the request (`request.*`), fixed once the request
/// is classified; `integration` is filled in once the inputs are read.
#[derive(Debug)]
pub struct RequestFacts {
    pub product: &'static str,
    pub operation: &'static str,
    pub method: Box<str>,
    pub path: Box<str>,
    pub proxy_host: Box<str>,
    pub tool: Box<str>,
    pub integration: OnceLock<Box<str>>,
}

impl RequestFacts {
    fn integration(&self) -> &str {
        self.integration.get().map_or("", |s| s)
    }
}

/// How one rule came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Matched,
    NotMatched,
    /// Not evaluated: it reads `credential` and the request uses none.
    Skipped,
    /// Evaluation failed (or the result was not a boolean).
    Error(String),
}

impl Outcome {
    /// Whether the rule takes effect: an error counts as a match for deny
    /// and limit rules, never for allow rules (fail closed).
    pub fn applies(&self, effect: Effect) -> bool {
        match self {
            Outcome::Matched => true,
            Outcome::Error(_) => effect != Effect::Allow,
            Outcome::NotMatched | Outcome::Skipped => false,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::NotMatched => "not_matched",
            Outcome::Skipped => "skipped",
            Outcome::Error(_) => "error",
        }
    }
}

/// Which credential a rule is asked about.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'c> {
    /// This one of the user's list.
    Credential(&'c Credential),
    /// The request uses none: rules that read `credential` are skipped.
    Nothing,
    /// One is used, but credgate does not know which (Paragon picks):
    /// rules that read `credential` error.
    Unknown,
}

/// Per-caller memo of rule results (see the module comment): per kind of
/// route, per credential id (`""` for none), one slot per rule. Bounded:
/// it starts over when full, and when the rules are reloaded.
#[derive(Default)]
pub struct RuleMemo(Mutex<MemoInner>);

#[derive(Default)]
struct MemoInner {
    rules: Option<Arc<Rules>>,
    entries: usize,
    results: HashMap<Arc<RouteKey>, HashMap<Box<str>, Vec<u8>>>,
}

/// What the memoized rules may read of a request besides the caller and
/// the credential.
#[derive(Hash, PartialEq, Eq)]
struct RouteKey {
    product: &'static str,
    operation: &'static str,
    method: Box<str>,
    integration: Box<str>,
}

/// The most (route kind, credential) pairs one caller's memo keeps.
const MEMO_ENTRIES: usize = 256;
const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

/// The rules as one request sees them.
pub struct RuleView<'a> {
    pub rules: &'a Arc<Rules>,
    pub identity: &'a Identity,
    pub request: &'a RequestFacts,
    pub memo: &'a RuleMemo,
    /// Built on first use, shared by every rule of this request.
    caller: OnceLock<Value>,
    request_value: OnceLock<Value>,
    route_key: OnceLock<Arc<RouteKey>>,
}

impl std::fmt::Debug for RuleView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleView")
            .field("rules", &self.rules.rules.len())
            .field("request", self.request)
            .finish()
    }
}

impl<'a> RuleView<'a> {
    pub fn new(
        rules: &'a Arc<Rules>,
        identity: &'a Identity,
        request: &'a RequestFacts,
        memo: &'a RuleMemo,
    ) -> Self {
        RuleView {
            rules,
            identity,
            request,
            memo,
            caller: OnceLock::new(),
            request_value: OnceLock::new(),
            route_key: OnceLock::new(),
        }
    }

    /// The first enforced allow rule that permits `c` to this caller.
    pub fn allows(&self, c: &Credential) -> Option<usize> {
        self.first(Subject::Credential(c), |r| {
            r.effect == Effect::Allow && !r.shadow
        })
    }

    /// The first enforced deny rule that refuses a request using `subject`.
    pub fn denies(&self, subject: Subject<'_>) -> Option<usize> {
        self.first(subject, |r| r.effect == Effect::Deny && !r.shadow)
    }

    /// Every enforced limit rule that counts this request.
    pub fn limits(&self, subject: Subject<'_>) -> Vec<usize> {
        self.matching(subject, |r| r.effect == Effect::Limit && !r.shadow)
    }

    /// Every shadow rule that would take effect on this request.
    pub fn shadowed(&self, subject: Subject<'_>) -> Vec<usize> {
        self.matching(subject, |r| r.shadow)
    }

    /// Every rule and how it comes out for `subject`, evaluated afresh
    /// (`/admin/decide`).
    pub fn trace(&self, subject: Subject<'_>) -> Vec<(&'a Rule, Outcome)> {
        self.rules
            .rules
            .iter()
            .map(|r| (r, self.evaluate(r, subject)))
            .collect()
    }

    fn first(&self, subject: Subject<'_>, pick: impl Fn(&Rule) -> bool) -> Option<usize> {
        let mut found = None;
        self.each(subject, pick, |i| {
            found = Some(i);
            false
        });
        found
    }

    fn matching(&self, subject: Subject<'_>, pick: impl Fn(&Rule) -> bool) -> Vec<usize> {
        let mut all = Vec::new();
        self.each(subject, pick, |i| {
            all.push(i);
            true
        });
        all
    }

    /// Calls `found` with each rule `pick` selects that takes effect on
    /// `subject`, in file order, while it answers `true`. Results come from
    /// the memo where they can (one lookup for the whole walk) and new
    /// ones go back into it.
    fn each(
        &self,
        subject: Subject<'_>,
        pick: impl Fn(&Rule) -> bool,
        mut found: impl FnMut(usize) -> bool,
    ) {
        if self.rules.is_empty() {
            return;
        }
        let credential: Option<&str> = match subject {
            Subject::Credential(c) => Some(&c.id),
            Subject::Nothing => Some(""),
            Subject::Unknown => None,
        };
        let mut slots = credential.and_then(|c| self.memo_get(c));
        let mut learned = false;
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !pick(rule) {
                continue;
            }
            let memoizable = !rule.reads.per_request;
            let known = slots.as_ref().filter(|_| memoizable).map(|s| s[i]);
            let applies = match known {
                Some(YES) => true,
                Some(NO) => false,
                _ => {
                    let applies = self.evaluate(rule, subject).applies(rule.effect);
                    if let (Some(s), true) = (slots.as_mut(), memoizable) {
                        s[i] = if applies { YES } else { NO };
                        learned = true;
                    }
                    applies
                }
            };
            if applies && !found(i) {
                break;
            }
        }
        if let (true, Some(c), Some(s)) = (learned, credential, slots) {
            self.memo_put(c, s);
        }
    }

    fn route_key(&self) -> &Arc<RouteKey> {
        self.route_key.get_or_init(|| {
            Arc::new(RouteKey {
                product: self.request.product,
                operation: self.request.operation,
                method: self.request.method.clone(),
                integration: self.request.integration().into(),
            })
        })
    }

    /// The memoized slots of `credential` on this kind of route (all
    /// unknown when there are none yet).
    fn memo_get(&self, credential: &str) -> Option<Vec<u8>> {
        let inner = self.memo.0.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = vec![UNKNOWN; self.rules.rules.len()];
        if !inner
            .rules
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, self.rules))
        {
            return Some(fresh);
        }
        let known = inner
            .results
            .get(self.route_key())
            .and_then(|m| m.get(credential))
            .cloned();
        Some(known.unwrap_or(fresh))
    }

    fn memo_put(&self, credential: &str, slots: Vec<u8>) {
        let mut inner = self.memo.0.lock().unwrap_or_else(|p| p.into_inner());
        let current = inner
            .rules
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, self.rules));
        if !current || inner.entries >= MEMO_ENTRIES {
            inner.results.clear();
            inner.entries = 0;
            inner.rules = Some(self.rules.clone());
        }
        let per_route = inner.results.entry(self.route_key().clone()).or_default();
        let new = per_route.insert(credential.into(), slots).is_none();
        if new {
            inner.entries += 1;
        }
    }

    /// Evaluates one rule for `subject`.
    pub fn evaluate(&self, rule: &Rule, subject: Subject<'_>) -> Outcome {
        let credential = match subject {
            Subject::Credential(c) => Some(c),
            Subject::Nothing if rule.reads.credential => return Outcome::Skipped,
            Subject::Unknown if rule.reads.credential => {
                return Outcome::Error(
                    "the request uses a credential credgate does not know (none was named)".into(),
                )
            }
            _ => None,
        };
        let vars = Vars {
            view: self,
            credential: credential.map(credential_value),
        };
        let mut ctx = cel::Context::with_env(self.rules.env.clone());
        ctx.set_variable_resolver(&vars);
        match rule.program.execute(&ctx) {
            Ok(Value::Bool(true)) => Outcome::Matched,
            Ok(Value::Bool(false)) => Outcome::NotMatched,
            Ok(other) => Outcome::Error(format!(
                "the expression is a {}, not a boolean",
                other.type_of()
            )),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    fn caller_value(&self) -> &Value {
        self.caller.get_or_init(|| {
            let id = self.identity;
            let mut m = HashMap::with_capacity(4);
            m.insert(key("user"), Value::from(&*id.user));
            m.insert(key("principal"), Value::from(&*id.principal));
            m.insert(key("admin"), Value::Bool(matches!(id.role, Role::Admin)));
            let claims = match (&id.claims, self.rules.uses_claims) {
                (Some(c), true) => json_map(c),
                _ => Value::Map(Map::from(HashMap::<Key, Value>::new())),
            };
            m.insert(key("claims"), claims);
            Value::Map(Map::from(m))
        })
    }

    fn request_value(&self) -> &Value {
        self.request_value.get_or_init(|| {
            let r = self.request;
            let mut m = HashMap::with_capacity(7);
            m.insert(key("product"), Value::from(r.product));
            m.insert(key("operation"), Value::from(r.operation));
            m.insert(key("method"), Value::from(&*r.method));
            m.insert(key("path"), Value::from(&*r.path));
            m.insert(key("integration"), Value::from(r.integration()));
            m.insert(key("proxy_host"), Value::from(&*r.proxy_host));
            m.insert(key("tool"), Value::from(&*r.tool));
            Value::Map(Map::from(m))
        })
    }
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

fn credential_value(c: &Credential) -> Value {
    let mut m = HashMap::with_capacity(4);
    m.insert(key("id"), Value::from(&*c.id));
    m.insert(key("integration"), Value::from(&*c.integration));
    m.insert(
        key("externalId"),
        Value::from(c.external_id.as_deref().unwrap_or("")),
    );
    m.insert(key("status"), Value::from(c.status.as_str()));
    Value::Map(Map::from(m))
}

/// A JSON claim as a CEL value: integers as `int` (`uint` above `i64`),
/// other numbers as `double`.
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_value).collect())),
        serde_json::Value::Object(o) => json_map(o),
    }
}

fn json_map(o: &serde_json::Map<String, serde_json::Value>) -> Value {
    let m: HashMap<Key, Value> = o.iter().map(|(k, v)| (key(k), json_value(v))).collect();
    Value::Map(Map::from(m))
}

/// The variables of one evaluation: `caller` and `request` from the view
/// (built once per request), `credential` for the subject.
struct Vars<'v> {
    view: &'v RuleView<'v>,
    credential: Option<Value>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let v = match variable {
            "caller" => self.view.caller_value().clone(),
            "request" => self.view.request_value().clone(),
            "credential" => self.credential.clone()?,
            _ => return None,
        };
        v.try_into().ok().map(CowVal::Owned)
    }
}
