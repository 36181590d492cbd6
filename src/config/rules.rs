//! The rules file (`policy.rules_file`, contract §5b): `[[rule]]` tables,
//! each a CEL expression over the caller, the credential and the request.
//! Parsed, compiled and checked here with the rest of the config (a bad rule
//! is a config error naming the rule, the file and the position; a reload
//! with one keeps the old rules); `policy::rules` evaluates them.
//!
//! ```toml
//! [[rule]]
//! name = "no-salesforce-deletes"
//! effect = "deny"                      # "allow" | "deny" | "limit"
//! when = "request.product == 'proxy' && request.method == 'DELETE' && request.integration == 'salesforce'"
//! mode = "shadow"                      # optional: record only
//! description = "nobody deletes Salesforce records through credgate"
//! # effect = "limit" only: rps = 1.0, burst = 5 (per principal, contract §5c)
//! ```
//!
//! The checker knows the variables' shape: `caller.{user, principal,
//! admin, claims}`, `credential.{id, integration, externalId, status}`,
//! `request.{product, operation, method, path, integration, proxy_host,
//! tool, side_effect, via}`. An unknown variable or field, an operator applied to operands it
//! cannot take (`request.method > 1`, `'a' in request.path`), and a result
//! that is not a boolean are errors at load, with the position in the
//! expression. Claims are the token's: their types are known only when a
//! request comes, and an error then is handled fail-closed (§5b).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    effect: String,
    when: toml::Spanned<String>,
    mode: Option<String>,
    description: Option<String>,
    rps: Option<f64>,
    burst: Option<u32>,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Permits the credential to a member, beside the grants of §5.
    Allow,
    /// Refuses, admins included.
    Deny,
    /// Counts the request against the rule's per-principal bucket (§5c).
    Limit,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Limit => "limit",
        }
    }
}

/// A limit rule's token bucket (contract §5c).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub rps: f64,
    /// The bucket's size: requests that may come at once.
    pub burst: u32,
}

/// Which setting of a rate is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateError {
    /// Not above 0 and at most 1,000,000.
    Rps,
    /// 0.
    Burst,
}

impl Rate {
    /// A rate of `rps` tokens a second (above 0, at most 1,000,000) and a
    /// burst of at least 1 (by default the rate rounded up): the one check
    /// behind `[limits]` and limit rules.
    pub fn new(rps: f64, burst: Option<u32>) -> Result<Rate, RateError> {
        if !(rps.is_finite() && rps > 0.0 && rps <= 1e6) {
            return Err(RateError::Rps);
        }
        let burst = burst.unwrap_or_else(|| rps.ceil().max(1.0) as u32);
        if burst == 0 {
            return Err(RateError::Burst);
        }
        Ok(Rate { rps, burst })
    }
}

/// What of the request a rule reads: the variables are built for it only
/// (a rule that reads no claims never sees them converted), and a rule that
/// reads only what is fixed for a caller, a credential, a product and a
/// method has its result memoized per caller (`policy::rules`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub caller: bool,
    pub claims: bool,
    pub credential: bool,
    pub request: bool,
    /// `request.path`, `proxy_host`, `tool`, `side_effect`, or `request` as a whole: what
    /// varies from request to request of one caller on one route kind.
    pub per_request: bool,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub effect: Effect,
    /// `mode = "shadow"`: what it would do is recorded, nothing more.
    pub shadow: bool,
    pub description: Option<String>,
    /// The expression as written (for `/admin/decide` and the access review).
    pub when: String,
    pub program: cel::Program,
    pub reads: Reads,
    pub rate: Option<Rate>,
}

/// The rules of `policy.rules_file`, in file order.
#[derive(Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// The CEL environment they were compiled for, shared by every
    /// evaluation.
    pub env: Arc<cel::Env>,
    /// Whether any rule reads `caller.claims` (authentication keeps a
    /// verified token's claims only then).
    pub uses_claims: bool,
    /// SHA-256 of the file's text (hex; empty without a file), for
    /// `credgate_config_info`.
    pub sha256: String,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.rules)
            .field("uses_claims", &self.uses_claims)
            .finish()
    }
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Reads and compiles a rules file. The error names the file, the rule
    /// and, for a bad expression, the line of the file and the position in
    /// the expression.
    pub fn load(path: &Path) -> Result<Rules, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut rules = Rules::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        rules.sha256 = super::sha256_hex(text.as_bytes());
        Ok(rules)
    }

    /// Compiles the text of a rules file.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            format!("{line}{}", e.message().lines().next().unwrap_or(""))
        })?;
        let env = Arc::new(cel::Env::stdlib());
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rule.len());
        for r in raw.rule {
            let line = line_of(text, r.when.span().start);
            let rule = compile(&env, r, line)?;
            if !names.insert(rule.name.clone()) {
                return Err(format!("rule `{}` is defined twice", rule.name));
            }
            rules.push(rule);
        }
        Ok(Rules {
            uses_claims: rules.iter().any(|r| r.reads.claims),
            rules,
            env,
            sha256: String::new(),
        })
    }
}

/// 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn compile(env: &cel::Env, r: RawRule, line: usize) -> Result<Rule, String> {
    let name = r.name.as_str();
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if name.is_empty() || name.len() > 64 || !name.chars().all(fits) {
        return Err(format!(
            "line {line}: a rule's `name` must be 1 to 64 of A-Z a-z 0-9 - _ . : (it names the rule in audit records and metrics)"
        ));
    }
    let at = |what: String| format!("rule `{name}` (line {line}): {what}");
    let effect = match r.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        "limit" => Effect::Limit,
        other => {
            return Err(at(format!(
                "`effect = \"{other}\"` is not \"allow\", \"deny\" or \"limit\""
            )))
        }
    };
    let shadow = match r.mode.as_deref() {
        None | Some("enforce") => false,
        Some("shadow") => true,
        Some(other) => {
            return Err(at(format!(
                "`mode = \"{other}\"` is not \"enforce\" or \"shadow\""
            )))
        }
    };
    let rate = match (effect, r.rps, r.burst) {
        (Effect::Limit, Some(rps), burst) => Some(Rate::new(rps, burst).map_err(|e| {
            at(match e {
                RateError::Rps => "`rps` must be a number above 0 and at most 1000000".into(),
                RateError::Burst => "`burst` must be at least 1".into(),
            })
        })?),
        (Effect::Limit, None, _) => {
            return Err(at(
                "a rule with `effect = \"limit\"` needs `rps` (and may set `burst`)".into(),
            ))
        }
        (_, None, None) => None,
        (_, _, _) => {
            return Err(at(
                "`rps` and `burst` belong to rules with `effect = \"limit\"`".into(),
            ))
        }
    };
    let when = r.when.into_inner();
    let program = env.compile(&when).map_err(|errs| {
        let first = errs.errors.first();
        let (l, c) = first.map(|e| e.pos).unwrap_or((1, 0));
        let msg = first.map(|e| e.msg.as_str()).unwrap_or("syntax error");
        at(format!("`when` {l}:{}: {msg}", c + 1))
    })?;
    let mut check = Check::default();
    let ty = check.expr(program.expression(), &mut Vec::new());
    if let Some((id, msg)) = check.error {
        return Err(at(format!(
            "`when` {}: {msg}",
            position(&when, program.source_info().offset_for(id))
        )));
    }
    if !matches!(ty, Ty::Bool | Ty::Dyn) {
        return Err(at(format!(
            "`when` must be a boolean; this expression is a {}",
            ty.name()
        )));
    }
    Ok(Rule {
        name: name.into(),
        effect,
        shadow,
        description: r.description,
        when,
        program,
        reads: check.reads,
        rate,
    })
}

/// `line:column` (1-based) of a byte offset in an expression.
fn position(source: &str, offset: Option<(u32, u32)>) -> String {
    let Some((start, _)) = offset else {
        return "1:1".into();
    };
    let before = &source[..(start as usize).min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

/// The static types the checker tells apart; `Dyn` is anything (claims,
/// comprehension variables, the result of an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Str,
    Int,
    Uint,
    Double,
    Bytes,
    Null,
    List,
    Map,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::Bytes => "bytes",
            Ty::Null => "null",
            Ty::List => "list",
            Ty::Map => "map",
            Ty::Dyn => "dyn",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double | Ty::Dyn)
    }

    /// Whether values of both types can be compared or combined (`Dyn`
    /// goes with anything; CEL's numbers compare across kinds).
    fn agrees(self, other: Ty) -> bool {
        self == Ty::Dyn || other == Ty::Dyn || self == other || (self.numeric() && other.numeric())
    }
}

/// The variables' fields and their types.
const CALLER: &[(&str, Ty)] = &[
    ("user", Ty::Str),
    ("principal", Ty::Str),
    ("admin", Ty::Bool),
    ("claims", Ty::Map),
];
const CREDENTIAL: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("integration", Ty::Str),
    ("externalId", Ty::Str),
    ("status", Ty::Str),
];
const REQUEST: &[(&str, Ty)] = &[
    ("product", Ty::Str),
    ("operation", Ty::Str),
    ("method", Ty::Str),
    ("path", Ty::Str),
    ("integration", Ty::Str),
    ("proxy_host", Ty::Str),
    ("tool", Ty::Str),
    ("side_effect", Ty::Str),
    ("via", Ty::Str),
];
/// Every variable a rule can read, as `root.field` (the README lists
/// each: a test).
pub fn variables() -> impl Iterator<Item = String> {
    [
        ("caller", CALLER),
        ("credential", CREDENTIAL),
        ("request", REQUEST),
    ]
    .into_iter()
    .flat_map(|(root, fields)| fields.iter().map(move |(f, _)| format!("{root}.{f}")))
}

/// Type names an expression may use (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

#[derive(Default)]
struct Check {
    reads: Reads,
    /// The first error: the node it is at, and what is wrong.
    error: Option<(u64, String)>,
}

impl Check {
    fn fail(&mut self, id: u64, msg: String) -> Ty {
        self.error.get_or_insert((id, msg));
        Ty::Dyn
    }

    fn root(&mut self, name: &str) -> Option<&'static [(&'static str, Ty)]> {
        Some(match name {
            "caller" => {
                self.reads.caller = true;
                CALLER
            }
            "credential" => {
                self.reads.credential = true;
                CREDENTIAL
            }
            "request" => {
                self.reads.request = true;
                REQUEST
            }
            _ => return None,
        })
    }

    fn expr(&mut self, e: &IdedExpr, scope: &mut Vec<String>) -> Ty {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::Uint,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::Str,
            },
            Expr::Ident(name) => {
                if scope.iter().any(|s| s == name) || TYPE_NAMES.contains(&name.as_str()) {
                    return Ty::Dyn;
                }
                if self.root(name).is_some() {
                    // The variable as a whole (passed on, indexed): assume
                    // it reads everything of it.
                    match name.as_str() {
                        "caller" => self.reads.claims = true,
                        "request" => self.reads.per_request = true,
                        _ => {}
                    }
                    return Ty::Map;
                }
                self.fail(
                    e.id,
                    format!("unknown variable `{name}` (there are caller, credential and request)"),
                )
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr {
                    let shadowed = scope.iter().any(|v| v == root);
                    if !shadowed {
                        if let Some(fields) = self.root(root) {
                            let Some(&(_, ty)) = fields.iter().find(|(f, _)| *f == s.field) else {
                                let known: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                                return self.fail(
                                    e.id,
                                    format!(
                                        "`{root}` has no field `{}` (it has {})",
                                        s.field,
                                        known.join(", ")
                                    ),
                                );
                            };
                            match (root.as_str(), s.field.as_str()) {
                                ("caller", "claims") => self.reads.claims = true,
                                (
                                    "request",
                                    "path" | "proxy_host" | "tool" | "side_effect" | "via",
                                ) => self.reads.per_request = true,
                                _ => {}
                            }
                            return if s.test { Ty::Bool } else { ty };
                        }
                    }
                }
                let operand = self.expr(&s.operand, scope);
                if !matches!(operand, Ty::Map | Ty::Dyn) {
                    return self.fail(
                        e.id,
                        format!("`.{}` selects a field of a {}", s.field, operand.name()),
                    );
                }
                if s.test {
                    Ty::Bool
                } else {
                    Ty::Dyn
                }
            }
            Expr::Call(call) => {
                let target = call.target.as_ref().map(|t| self.expr(t, scope));
                let args: Vec<Ty> = call.args.iter().map(|a| self.expr(a, scope)).collect();
                self.call(e.id, &call.func_name, target, &args)
            }
            Expr::Comprehension(c) => {
                let range = self.expr(&c.iter_range, scope);
                if !matches!(range, Ty::List | Ty::Map | Ty::Dyn) {
                    return self.fail(
                        c.iter_range.id,
                        format!(
                            "a macro ranges over a list or a map, not a {}",
                            range.name()
                        ),
                    );
                }
                let depth = scope.len();
                scope.push(c.iter_var.clone());
                scope.extend(c.iter_var2.iter().cloned());
                scope.push(c.accu_var.clone());
                self.expr(&c.accu_init, scope);
                self.expr(&c.loop_cond, scope);
                self.expr(&c.loop_step, scope);
                let result = self.expr(&c.result, scope);
                scope.truncate(depth);
                result
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.expr(x, scope);
                }
                Ty::List
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.expr(&me.key, scope);
                        self.expr(&me.value, scope);
                    }
                }
                Ty::Map
            }
            Expr::Struct(_) => self.fail(e.id, "message literals are not supported".into()),
            Expr::Unspecified => Ty::Dyn,
        }
    }

    fn call(&mut self, id: u64, f: &str, target: Option<Ty>, args: &[Ty]) -> Ty {
        let bad = |check: &mut Check, what: &str, tys: &[Ty]| {
            let tys: Vec<&str> = tys.iter().map(|t| t.name()).collect();
            check.fail(id, format!("{what} cannot take ({})", tys.join(", ")))
        };
        match (f, target, args) {
            ("_&&_" | "_||_", None, [a, b]) => {
                if ![*a, *b].iter().all(|t| matches!(t, Ty::Bool | Ty::Dyn)) {
                    return bad(self, if f == "_&&_" { "`&&`" } else { "`||`" }, args);
                }
                Ty::Bool
            }
            ("!_", None, [a]) => {
                if !matches!(a, Ty::Bool | Ty::Dyn) {
                    return bad(self, "`!`", args);
                }
                Ty::Bool
            }
            ("@not_strictly_false", _, _) => Ty::Bool,
            ("_==_" | "_!=_", None, [a, b]) => {
                if !a.agrees(*b) && *a != Ty::Null && *b != Ty::Null {
                    return bad(self, "`==`", args);
                }
                Ty::Bool
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None, [a, b]) => {
                let orderable = |t: &Ty| !matches!(t, Ty::List | Ty::Map | Ty::Null);
                if !a.agrees(*b) || !orderable(a) || !orderable(b) {
                    return bad(self, "a comparison", args);
                }
                Ty::Bool
            }
            ("_+_", None, [a, b]) => {
                let addable = |t: &Ty| !matches!(t, Ty::Bool | Ty::Map | Ty::Null);
                if !a.agrees(*b) || !addable(a) || !addable(b) {
                    return bad(self, "`+`", args);
                }
                if *a == Ty::Dyn {
                    *b
                } else {
                    *a
                }
            }
            ("_-_" | "_*_" | "_/_" | "_%_", None, [a, b]) => {
                if !a.numeric() || !b.numeric() || !a.agrees(*b) {
                    return bad(self, "arithmetic", args);
                }
                if *a == Ty::Dyn {
                    *b
                } else {
                    *a
                }
            }
            ("-_", None, [a]) => {
                if !a.numeric() {
                    return bad(self, "`-`", args);
                }
                *a
            }
            ("@in", None, [_, range]) => {
                if !matches!(range, Ty::List | Ty::Map | Ty::Dyn) {
                    return bad(self, "`in`", args);
                }
                Ty::Bool
            }
            ("_?_:_", None, [c, a, b]) => {
                if !matches!(c, Ty::Bool | Ty::Dyn) {
                    return bad(self, "`? :`", args);
                }
                if a == b {
                    *a
                } else {
                    Ty::Dyn
                }
            }
            ("_[_]" | "_[?_]", None, [a, _]) => {
                if !matches!(a, Ty::List | Ty::Map | Ty::Dyn) {
                    return bad(self, "indexing", args);
                }
                Ty::Dyn
            }
            ("size", _, _) => {
                let of = target.into_iter().chain(args.iter().copied());
                for t in of {
                    if !matches!(t, Ty::Str | Ty::Bytes | Ty::List | Ty::Map | Ty::Dyn) {
                        return bad(self, "`size`", &[t]);
                    }
                }
                Ty::Int
            }
            ("startsWith" | "endsWith" | "contains" | "matches", Some(t), [a]) => {
                if !matches!(t, Ty::Str | Ty::Dyn) || !matches!(a, Ty::Str | Ty::Dyn) {
                    return bad(self, &format!("`{f}`"), &[t, *a]);
                }
                Ty::Bool
            }
            ("string", None, [_]) => Ty::Str,
            ("int", None, [_]) => Ty::Int,
            ("uint", None, [_]) => Ty::Uint,
            ("double", None, [_]) => Ty::Double,
            ("bool", None, [_]) => Ty::Bool,
            _ => Ty::Dyn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Rules::parse(text).unwrap_err()
    }

    fn one(when: &str) -> Result<Rules, String> {
        Rules::parse(&format!(
            "[[rule]]\nname = \"r\"\neffect = \"deny\"\nwhen = {when:?}\n"
        ))
    }

    #[test]
    fn rules_compile_with_what_they_read() {
        let rules = Rules::parse(
            r#"
[[rule]]
name = "finance-netsuite"
effect = "allow"
when = "'finance' in caller.claims.groups && credential.integration == 'netsuite' && request.method in ['GET', 'HEAD']"

[[rule]]
name = "no-sf-delete"
effect = "deny"
mode = "shadow"
description = "d"
when = "request.product == 'proxy' && request.method == 'DELETE' && request.integration == 'salesforce'"

[[rule]]
name = "slow-deletes"
effect = "limit"
rps = 0.5
when = "request.method == 'DELETE' && request.path.startsWith('/projects/')"
"#,
        )
        .unwrap();
        assert!(rules.uses_claims);
        let [a, d, l] = &rules.rules[..] else {
            panic!("three rules")
        };
        assert_eq!((a.effect, a.shadow), (Effect::Allow, false));
        assert!(a.reads.claims && a.reads.credential && !a.reads.per_request);
        assert_eq!((d.effect, d.shadow), (Effect::Deny, true));
        assert!(!d.reads.caller && !d.reads.credential && d.reads.request);
        assert_eq!(d.description.as_deref(), Some("d"));
        assert_eq!(l.rate, Some(Rate { rps: 0.5, burst: 1 }));
        assert!(l.reads.per_request);
    }

    #[test]
    fn errors_name_the_rule_the_line_and_the_position() {
        let text =
            "\n[[rule]]\nname = \"broken\"\neffect = \"deny\"\nwhen = \"request.method == \"\n";
        let e = error(text);
        assert!(e.starts_with("rule `broken` (line 5): `when` 1:"), "{e}");
        for (when, expect) in [
            (
                "request.methd == 'GET'",
                "`when` 1:8: `request` has no field `methd`",
            ),
            (
                "reqest.method == 'GET'",
                "`when` 1:1: unknown variable `reqest`",
            ),
            (
                "request.method > 1",
                "`when` 1:16: a comparison cannot take (string, int)",
            ),
            ("request.method == 1", "`==` cannot take (string, int)"),
            ("'a' in request.path", "`in` cannot take (string, string)"),
            (
                "caller.admin && request.method",
                "`&&` cannot take (bool, string)",
            ),
            (
                "request.method",
                "`when` must be a boolean; this expression is a string",
            ),
            ("size(caller.admin) > 0", "`size` cannot take (bool)"),
            (
                "request.path.startsWith(1)",
                "`startsWith` cannot take (string, int)",
            ),
            (
                "credential.status.foo",
                "`.foo` selects a field of a string",
            ),
        ] {
            let e = one(when).unwrap_err();
            assert!(e.contains(expect), "{when}: {e}");
            assert!(e.starts_with("rule `r` (line 4): "), "{e}");
        }
        // Comprehension variables are in scope inside their macro only.
        one("caller.claims.groups.exists(g, g == 'x')").unwrap();
        let e = one("caller.claims.groups.exists(g, g == 'x') && g == 'y'").unwrap_err();
        assert!(e.contains("unknown variable `g`"), "{e}");
        // Claims are dynamic; `has` tests are booleans.
        one("has(caller.claims.team) && caller.claims.team == 'a' && caller.claims.level > 3")
            .unwrap();
        one("type(caller.claims.groups) == list").unwrap();
    }

    #[test]
    fn rule_tables_are_checked() {
        let e = error("[[rule]]\nname = \"a\"\neffect = \"permit\"\nwhen = \"true\"\n");
        assert!(e.contains("`effect = \"permit\"` is not"), "{e}");
        let e =
            error("[[rule]]\nname = \"a\"\neffect = \"deny\"\nmode = \"log\"\nwhen = \"true\"\n");
        assert!(e.contains("`mode = \"log\"`"), "{e}");
        let e = error("[[rule]]\nname = \"a\"\neffect = \"limit\"\nwhen = \"true\"\n");
        assert!(e.contains("needs `rps`"), "{e}");
        let e = error("[[rule]]\nname = \"a\"\neffect = \"deny\"\nrps = 1.0\nwhen = \"true\"\n");
        assert!(
            e.contains("belong to rules with `effect = \"limit\"`"),
            "{e}"
        );
        let e = error("[[rule]]\nname = \"a\"\neffect = \"limit\"\nrps = 0.0\nwhen = \"true\"\n");
        assert!(e.contains("`rps` must be"), "{e}");
        let twice = "[[rule]]\nname = \"a\"\neffect = \"deny\"\nwhen = \"true\"\n";
        let e = error(&format!("{twice}{twice}"));
        assert!(e.contains("rule `a` is defined twice"), "{e}");
        let e = error("[[rule]]\nname = \"a\"\neffect = \"deny\"\nwhen = \"true\"\nwhy = 1\n");
        assert!(e.starts_with("line 5: unknown field `why`"), "{e}");
        let e = error("[[rule]]\nname = \"\"\neffect = \"deny\"\nwhen = \"true\"\n");
        assert!(e.contains("`name` must be"), "{e}");
    }
}
