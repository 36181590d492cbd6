//! The decision point's answers for one request (contract §14, `[authzen]
//! pdp_url`): a fourth kind of grant beside the owner label, the token
//! claim and the ACL. The gateway asks the decision point (and its cache)
//! before it decides and records each answer here; the permit reads them
//! as it reads the other grants. A credential it was not asked about, or
//! whose question failed, is not permitted by it (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;

/// What the decision point answered for one member on one request, by
/// credential id. The first answer for a credential stands for the whole
/// request, so one request never sees two decisions for one credential.
#[derive(Debug, Default)]
pub struct PdpAnswers {
    answers: Mutex<HashMap<Box<str>, bool>>,
}

impl PdpAnswers {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Box<str>, bool>) -> T) -> T {
        let mut map = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// Whether the decision point answered `decision: true` for `id`.
    pub fn permits(&self, id: &str) -> bool {
        self.with(|m| m.get(id).copied().unwrap_or(false))
    }

    /// Whether `id` has an answer (a failed question counts: `false`).
    pub fn knows(&self, id: &str) -> bool {
        self.with(|m| m.contains_key(id))
    }

    /// Records the answer for `id`, unless it has one already.
    pub fn record(&self, id: &str, decision: bool) {
        self.with(|m| {
            m.entry(id.into()).or_insert(decision);
        });
    }

    /// How many credentials have an answer.
    pub fn len(&self) -> usize {
        self.with(|m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::PdpAnswers;

    #[test]
    fn unasked_and_refused_credentials_are_not_permitted_and_the_first_answer_stands() {
        let a = PdpAnswers::default();
        assert!(!a.permits("c1") && !a.knows("c1"));
        a.record("c1", true);
        a.record("c2", false);
        assert!(a.permits("c1") && a.knows("c1"));
        assert!(!a.permits("c2") && a.knows("c2"));
        a.record("c1", false);
        a.record("c2", true);
        assert!(a.permits("c1") && !a.permits("c2"));
        assert_eq!(a.len(), 2);
    }
}
