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

use cel::common::types::CelNull;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::Value;

use crate::auth::{Identity, Role};
use crate::config::rules::{Effect, Rule, Rules};
use crate::paragon::credentials::Credential;

/// What a rule sees of the request (`request.*`), fixed once the request
/// is classified; `integration` is filled in once the inputs are read.
#[derive(Debug)]
pub struct RequestFacts<'r> {
    pub product: &'static str,
    pub operation: &'static str,
    pub method: &'r str,
    /// The path Paragon receives, percent-decoded once (the provider path
    /// on the Proxy API).
    pub path: std::borrow::Cow<'r, str>,
    pub proxy_host: Box<str>,
    /// `mcp`: the tool called, and its `sideEffect` when Paragon gives one
    /// (`read`, `write`, `delete`, `send`, ...); empty otherwise.
    pub tool: &'r str,
    pub side_effect: &'r str,
    /// `mcp` for an MCP tool call, else empty.
    pub via: &'static str,
    /// The integration the route, the body or an ActionKit name names,
    /// once the inputs are read; where that is empty, a rule judging a
    /// credential sees that credential's integration.
    pub integration: OnceLock<Box<str>>,
}

impl RequestFacts<'_> {
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

/// What [`RuleView::judge`] found, by rule index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub denied: Option<usize>,
    pub shadowed: Vec<usize>,
    pub limits: Vec<usize>,
}

impl Judged {
    /// Adds what another credential of the same request was judged to
    /// (the first deny stays first; each rule once).
    pub fn merge(&mut self, other: Judged) {
        self.denied = self.denied.or(other.denied);
        for i in other.shadowed {
            if !self.shadowed.contains(&i) {
                self.shadowed.push(i);
            }
        }
        for i in other.limits {
            if !self.limits.contains(&i) {
                self.limits.push(i);
            }
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

/// Per-caller memo of rule results (see the module comment): one entry
/// per kind of route and credential (`""` for none), one slot per rule.
/// A caller uses few of them, so they are kept in a short list scanned in
/// place (no hashing on the warm path). Bounded: it starts over when full,
/// and when the rules are reloaded.
#[derive(Default)]
pub struct RuleMemo(Mutex<MemoInner>);

#[derive(Default)]
struct MemoInner {
    rules: Option<Arc<Rules>>,
    entries: Vec<MemoEntry>,
}

/// What memoized rules may read of a request besides the caller, and their
/// results.
struct MemoEntry {
    product: &'static str,
    operation: &'static str,
    method: Box<str>,
    integration: Box<str>,
    credential: Box<str>,
    /// What a rule reads of the credential besides its id and integration:
    /// a label or status that changed is a new entry (contract §5b).
    external_id: Box<str>,
    status: &'static str,
    slots: Vec<u8>,
}

/// The most (route kind, credential) pairs one caller's memo keeps.
pub const MEMO_ENTRIES: usize = 64;
const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

/// The rules as one request sees them.
pub struct RuleView<'a> {
    pub rules: &'a Arc<Rules>,
    pub identity: &'a Identity,
    pub request: &'a RequestFacts<'a>,
    pub memo: &'a RuleMemo,
    /// Built on first use, shared by every rule of this request.
    caller: OnceLock<Box<dyn Val>>,
    request_value: OnceLock<Box<dyn Val>>,
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
        request: &'a RequestFacts<'a>,
        memo: &'a RuleMemo,
    ) -> Self {
        RuleView {
            rules,
            identity,
            request,
            memo,
            caller: OnceLock::new(),
            request_value: OnceLock::new(),
        }
    }

    /// The first enforced allow rule that permits `c` to this caller.
    pub fn allows(&self, c: &Credential) -> Option<usize> {
        self.first(Subject::Credential(c), |r| {
            r.effect == Effect::Allow && !r.shadow
        })
    }

    /// Deny, shadow and limit rules for a request using `subject`, in one
    /// walk: the first enforced deny rule that refuses, the shadow rules
    /// that would take effect, the enforced limit rules that count it.
    pub fn judge(&self, subject: Subject<'_>) -> Judged {
        let mut j = Judged::default();
        self.each(
            subject,
            |r| r.shadow || r.effect != Effect::Allow,
            |i| {
                let r = &self.rules.rules[i];
                match r.effect {
                    _ if r.shadow => j.shadowed.push(i),
                    Effect::Deny => {
                        j.denied.get_or_insert(i);
                    }
                    Effect::Limit => j.limits.push(i),
                    Effect::Allow => {}
                }
                true
            },
        );
        j
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

    /// Calls `found` with each rule `pick` selects that takes effect on
    /// `subject`, in file order, while it answers `true`. Results come from
    /// the memo where they can and new ones go into it; the caller's memo
    /// is held for the walk (only this caller's concurrent requests share
    /// it), so a warm walk costs one lookup and no allocation.
    fn each(
        &self,
        subject: Subject<'_>,
        pick: impl Fn(&Rule) -> bool,
        mut found: impl FnMut(usize) -> bool,
    ) {
        if self.rules.is_empty() {
            return;
        }
        let memoized = !matches!(subject, Subject::Unknown);
        let mut inner = self.memo.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut slots = memoized.then(|| self.slots(&mut inner, subject));
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !pick(rule) {
                continue;
            }
            let slot = slots
                .as_mut()
                .filter(|_| !rule.reads.per_request)
                .map(|s| &mut s[i]);
            let applies = match slot {
                Some(s) if *s == YES => true,
                Some(s) if *s == NO => false,
                Some(s) => {
                    let applies = self.evaluate(rule, subject).applies(rule.effect);
                    *s = if applies { YES } else { NO };
                    applies
                }
                None => self.evaluate(rule, subject).applies(rule.effect),
            };
            if applies && !found(i) {
                break;
            }
        }
    }

    /// The memo slots of `subject` (a credential, or none) on this kind of
    /// route, made (all unknown) when there are none; the memo starts over
    /// when it holds other rules or is full. An entry is keyed by all that
    /// memoized rules read: the route kind, the method, the integration and
    /// the credential's id, label and status.
    fn slots<'m>(&self, inner: &'m mut MemoInner, subject: Subject<'_>) -> &'m mut Vec<u8> {
        if !inner
            .rules
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, self.rules))
        {
            inner.entries.clear();
            inner.rules = Some(self.rules.clone());
        }
        let (credential, external_id, status) = match subject {
            Subject::Credential(c) => (
                &*c.id,
                c.external_id.as_deref().unwrap_or(""),
                c.status.as_str(),
            ),
            _ => ("", "", ""),
        };
        let r = self.request;
        let integration = self.integration_for(subject);
        let found = inner.entries.iter().position(|e| {
            e.product == r.product
                && e.operation == r.operation
                && *e.method == *r.method
                && *e.credential == *credential
                && *e.integration == *integration
                && *e.external_id == *external_id
                && e.status == status
        });
        let at = match found {
            Some(at) => at,
            None => {
                if inner.entries.len() >= MEMO_ENTRIES {
                    inner.entries.clear();
                }
                inner.entries.push(MemoEntry {
                    product: r.product,
                    operation: r.operation,
                    method: r.method.into(),
                    integration: integration.into(),
                    credential: credential.into(),
                    external_id: external_id.into(),
                    status,
                    slots: vec![UNKNOWN; self.rules.rules.len()],
                });
                inner.entries.len() - 1
            }
        };
        &mut inner.entries[at].slots
    }

    /// `request.integration` for a rule judging `subject`: the one the
    /// request names, else the credential's (contract §5b: known whenever
    /// credgate knows it).
    fn integration_for<'s>(&'s self, subject: Subject<'s>) -> &'s str {
        match (self.request.integration(), subject) {
            ("", Subject::Credential(c)) => &c.integration,
            (named, _) => named,
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
        // The request as the credential's integration completes it, built
        // for this evaluation only when the request named none.
        let request = match credential {
            Some(c) if self.request.integration().is_empty() => {
                Some(to_val(self.request_map(&c.integration)).unwrap_or_else(|| Box::new(CelNull)))
            }
            _ => None,
        };
        let vars = Vars {
            view: self,
            credential: credential.and_then(|c| to_val(credential_value(c))),
            request,
        };
        let mut ctx = cel::Context::with_env(self.rules.env.clone());
        ctx.set_variable_resolver(&vars);
        outcome(rule.program.execute(&ctx))
    }

    /// `caller`, converted once per request (`None`: it could not be).
    fn caller_value(&self) -> Option<&dyn Val> {
        let v = self.caller.get_or_init(|| {
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
            to_val(Value::Map(Map::from(m))).unwrap_or_else(|| Box::new(CelNull))
        });
        Some(&**v)
    }

    fn request_value(&self) -> Option<&dyn Val> {
        let v = self.request_value.get_or_init(|| {
            to_val(self.request_map(self.request.integration()))
                .unwrap_or_else(|| Box::new(CelNull))
        });
        Some(&**v)
    }

    /// `request` with `integration` as given.
    fn request_map(&self, integration: &str) -> Value {
        let r = self.request;
        let mut m = HashMap::with_capacity(9);
        m.insert(key("product"), Value::from(r.product));
        m.insert(key("operation"), Value::from(r.operation));
        m.insert(key("method"), Value::from(r.method));
        m.insert(key("path"), Value::from(&*r.path));
        m.insert(key("integration"), Value::from(integration));
        m.insert(key("proxy_host"), Value::from(&*r.proxy_host));
        m.insert(key("tool"), Value::from(r.tool));
        m.insert(key("side_effect"), Value::from(r.side_effect));
        m.insert(key("via"), Value::from(r.via));
        Value::Map(Map::from(m))
    }
}

/// How `rule` comes out for `c` whatever the caller and the request (the
/// access review): evaluated with `credential` alone bound. `Matched` or
/// `NotMatched` hold for every caller (a CEL result that does not error
/// did not depend on the variables left out); `Error` means it depends on
/// them.
pub fn probe(rules: &Rules, rule: &Rule, c: &Credential) -> Outcome {
    let only = CredentialOnly(credential_value(c));
    let mut ctx = cel::Context::with_env(rules.env.clone());
    ctx.set_variable_resolver(&only);
    outcome(rule.program.execute(&ctx))
}

/// A rule's result as an [`Outcome`]: anything but a boolean is an error.
fn outcome(result: cel::ResolveResult) -> Outcome {
    match result {
        Ok(Value::Bool(true)) => Outcome::Matched,
        Ok(Value::Bool(false)) => Outcome::NotMatched,
        Ok(other) => Outcome::Error(format!(
            "the expression is a {}, not a boolean",
            other.type_of()
        )),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

struct CredentialOnly(Value);

impl VariableResolver for CredentialOnly {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "credential" => self.0.clone().try_into().ok().map(CowVal::Owned),
            _ => None,
        }
    }
}

/// A value in the interpreter's own representation (built once, then
/// lent to every lookup).
fn to_val(v: Value) -> Option<Box<dyn Val>> {
    v.try_into().ok()
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
    credential: Option<Box<dyn Val>>,
    /// `request` for this evaluation, when it differs from the view's.
    request: Option<Box<dyn Val>>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let v: &dyn Val = match variable {
            "caller" => self.view.caller_value()?,
            "request" => match &self.request {
                Some(r) => &**r,
                None => self.view.request_value()?,
            },
            "credential" => self.credential.as_deref()?,
            _ => return None,
        };
        Some(CowVal::Borrowed(v))
    }
}
