use super::*;
use serde_json::json;

/// contract §12: the `act` claim's `sub` is the agent acting for the
/// principal; a delegation whose actor cannot be read fails the token.
#[test]
fn act_sub_is_the_actor_and_an_unreadable_act_fails() {
    let claims = |v: Value| -> Map<String, Value> {
        let Value::Object(m) = v else { unreachable!() };
        m
    };
    assert_eq!(actor(&claims(json!({"sub": "alice"}))).unwrap(), None);
    assert_eq!(
        actor(&claims(
            json!({"act": {"sub": "agent-7", "act": {"sub": "older"}}})
        ))
        .unwrap()
        .as_deref(),
        Some("agent-7")
    );
    for bad in [
        json!({"act": "agent-7"}),
        json!({"act": {}}),
        json!({"act": {"sub": ""}}),
        json!({"act": {"sub": 7}}),
        json!({"act": null}),
    ] {
        assert!(
            matches!(
                actor(&claims(bad.clone())),
                Err(AuthError::ClaimType("act"))
            ),
            "{bad}"
        );
    }
}
