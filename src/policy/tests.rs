use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::config::acl;
use crate::config::validate_owner_template;
use crate::config::AdminDefault;
use crate::paragon::routes::Product;

const SF_ALICE: &str = "11111111-1111-1111-1111-111111111111";
const SF_BOB: &str = "22222222-2222-2222-2222-222222222222";
const SL_ALICE1: &str = "33333333-3333-3333-3333-333333333333";
const SL_ALICE2: &str = "44444444-4444-4444-4444-444444444444";
const SL_BOB: &str = "55555555-5555-5555-5555-555555555555";
const SL_ALICE_BAD: &str = "66666666-6666-6666-6666-666666666666";

fn list() -> CredentialList {
    let cred = |id: &str, ext: &str, status: &str| {
        format!(r#"{{"id":"{id}","externalId":"{ext}","status":"{status}"}}"#)
    };
    let body = format!(
        r#"{{"authenticated":true,"integrations":{{
            "salesforce":{{"allCredentials":[{},{}]}},
            "slack":{{"allCredentials":[{},{},{},{}]}}}}}}"#,
        cred(SF_ALICE, "alice", "VALID"),
        cred(SF_BOB, "bob", "VALID"),
        cred(SL_ALICE1, "alice", "VALID"),
        cred(SL_ALICE2, "alice", "VALID"),
        cred(SL_BOB, "bob", "VALID"),
        cred(SL_ALICE_BAD, "alice-old", "INVALID"),
    );
    CredentialList::parse(body.as_bytes()).unwrap()
}

fn policy(owner: Option<&str>) -> PolicyConfig {
    PolicyConfig {
        owner_external_id: owner.map(Into::into),
        credentials_claim: Some("creds".into()),
        acl_file: None,
        acl: Arc::new(acl::Acl::default()),
        rules_file: None,
        rules: Arc::default(),
        admin_default: AdminDefault::Passthrough,
        member_products: Product::ALL.iter().copied().collect::<BTreeSet<_>>(),
        allow_account_auth: false,
        proxy_url_hosts: vec![],
        webhook_hosts: vec![],
        member_paragon_headers: vec![],
        member_metadata: crate::config::MemberMetadata::Refuse,
        enforce: crate::config::Enforce::Enforce,
        shadow: BTreeSet::new(),
    }
}

fn member(principal: &str, claimed: &[&str]) -> Identity {
    Identity::new(
        "acme".into(),
        principal.into(),
        Role::Member {
            claimed: claimed.iter().map(|s| (*s).into()).collect(),
        },
        u64::MAX,
        None,
    )
}

fn ids<'a>(it: impl Iterator<Item = &'a Credential>) -> Vec<&'a str> {
    it.map(|c| &*c.id).collect()
}

#[test]
fn owner_template_grants_by_external_id() {
    let l = list();
    let p = policy(Some("{principal}"));
    let alice = member("alice", &[]);
    let permit = Permit::new(&alice, &p, None);
    assert_eq!(
        ids(permit.permitted(&l)),
        vec![SF_ALICE, SL_ALICE1, SL_ALICE2]
    );
    let prefixed = policy(Some("member:{principal}"));
    let permit = Permit::new(&alice, &prefixed, None);
    assert_eq!(ids(permit.permitted(&l)), Vec::<&str>::new());
}

#[test]
fn token_claim_grants_by_id() {
    let l = list();
    let p = policy(None);
    let bob = member("bob", &[SL_BOB]);
    let permit = Permit::new(&bob, &p, None);
    assert_eq!(ids(permit.permitted(&l)), vec![SL_BOB]);
}

#[test]
fn acl_grants_by_principal() {
    let l = list();
    let mut p = policy(None);
    p.acl = Arc::new(acl::Acl::parse(&format!("[[grant]]\nprincipal = \"carol\"\ncredentials = [\"{SF_BOB}\"]\nintegrations = [\"slack\"]")).unwrap());
    let carol = member("carol", &[]);
    let permit = Permit::new(&carol, &p, None);
    assert_eq!(ids(permit.permitted(&l)).len(), 5);
    let dave = member("dave", &[]);
    assert_eq!(ids(Permit::new(&dave, &p, None).permitted(&l)).len(), 0);
}

#[test]
fn named_credentials_resolve_or_are_forbidden_alike() {
    let l = list();
    let p = policy(Some("{principal}"));
    let alice = member("alice", &[]);
    let permit = Permit::new(&alice, &p, None);
    let id = |s: &str| Requested::parse(s).unwrap();
    let sf = RouteIntegration::Known("salesforce");
    assert_eq!(
        resolve_named(&l, &permit, sf, &id(SF_ALICE))
            .unwrap()
            .unwrap()
            .id
            .as_ref(),
        SF_ALICE
    );
    assert_eq!(
        resolve_named(&l, &permit, sf, &id(&SF_ALICE.to_uppercase()))
            .unwrap()
            .unwrap()
            .id
            .as_ref(),
        SF_ALICE
    );
    // Bob's credential, a credential of another integration, and an unknown one.
    assert!(matches!(
        resolve_named(&l, &permit, sf, &id(SF_BOB)),
        Err(GatewayError::CredentialForbidden(Refused::NoGrant))
    ));
    assert!(matches!(
        resolve_named(&l, &permit, sf, &id(SL_ALICE1)),
        Err(GatewayError::CredentialForbidden(Refused::OtherIntegration))
    ));
    assert!(matches!(
        resolve_named(&l, &permit, sf, &id("99999999-9999-9999-9999-999999999999")),
        Ok(None)
    ));
    assert!(matches!(
        resolve_named(&l, &permit, RouteIntegration::Unmatched, &id(SF_ALICE)),
        Err(GatewayError::CredentialForbidden(Refused::OtherIntegration))
    ));
}

#[test]
fn ext_values_resolve_among_permitted_credentials() {
    let l = list();
    let p = policy(Some("{principal}"));
    let alice = member("alice", &[]);
    let permit = Permit::new(&alice, &p, None);
    let ext = Requested::parse("ext:alice").unwrap();
    let got = resolve_named(&l, &permit, RouteIntegration::Known("salesforce"), &ext)
        .unwrap()
        .unwrap();
    assert_eq!(&*got.id, SF_ALICE);
    // Two slack accounts labelled alice: ambiguous.
    assert!(matches!(
        resolve_named(&l, &permit, RouteIntegration::Known("slack"), &ext),
        Err(GatewayError::CredentialForbidden(Refused::Ambiguous))
    ));
    // Bob's label is never resolved for alice.
    let bobs = Requested::parse("ext:bob").unwrap();
    assert!(matches!(
        resolve_named(&l, &permit, RouteIntegration::Unknown, &bobs),
        Ok(None)
    ));
    // ...and once absent after a reload, the reason tells why.
    assert_eq!(
        why_absent(&l, RouteIntegration::Unknown, &bobs),
        Refused::NoGrant
    );
    assert_eq!(
        why_absent(&l, RouteIntegration::Known("gmail"), &bobs),
        Refused::OtherIntegration
    );
    let nobody = Requested::parse("ext:nobody").unwrap();
    assert_eq!(
        why_absent(&l, RouteIntegration::Unknown, &nobody),
        Refused::NotInList
    );
}

#[test]
fn requested_values_must_be_uuid_or_ext() {
    for bad in [
        "",
        "ext:",
        "abc",
        "11111111111111111111111111111111",
        "EXT:alice",
        " ext:a",
    ] {
        assert!(
            matches!(Requested::parse(bad), Err(GatewayError::BadRequest(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn defaults_follow_the_spec() {
    let l = list();
    let p = policy(Some("{principal}"));
    let alice = member("alice", &[]);
    let permit = Permit::new(&alice, &p, None);
    // One permitted VALID salesforce credential: used.
    assert_eq!(
        &*resolve_default(&l, &permit, RouteIntegration::Known("salesforce"))
            .unwrap()
            .id,
        SF_ALICE
    );
    // Two permitted slack credentials: 400 with the candidates.
    match resolve_default(&l, &permit, RouteIntegration::Known("slack")) {
        Err(GatewayError::CredentialRequired { candidates }) => {
            assert_eq!(
                candidates,
                vec![SL_ALICE1.to_string(), SL_ALICE2.to_string()]
            )
        }
        other => panic!("{other:?}"),
    }
    // Nothing permitted for gmail.
    assert!(matches!(
        resolve_default(&l, &permit, RouteIntegration::Known("gmail")),
        Err(GatewayError::NoPermittedCredential(Refused::NotInList))
    ));
    // Unknown integration: several permitted at all.
    assert!(matches!(
        resolve_default(&l, &permit, RouteIntegration::Unknown),
        Err(GatewayError::CredentialRequired { .. })
    ));
    let bob = member("bob", &[]);
    let p2 = policy(None);
    let claimed = member("bob", &[SL_BOB]);
    assert!(matches!(
        resolve_default(&l, &Permit::new(&bob, &p2, None), RouteIntegration::Unknown),
        Err(GatewayError::NoPermittedCredential(Refused::NoGrant))
    ));
    assert_eq!(
        &*resolve_default(
            &l,
            &Permit::new(&claimed, &p2, None),
            RouteIntegration::Unknown
        )
        .unwrap()
        .id,
        SL_BOB
    );
}

#[test]
fn invalid_credentials_are_not_defaults_of_a_known_integration() {
    let l = list();
    let p = policy(None);
    let only_bad = member("x", &[SL_ALICE_BAD]);
    let permit = Permit::new(&only_bad, &p, None);
    assert!(matches!(
        resolve_default(&l, &permit, RouteIntegration::Known("slack")),
        Err(GatewayError::NoPermittedCredential(Refused::NoGrant))
    ));
    // ...but it is the one permitted credential when the integration is unknown.
    assert_eq!(
        &*resolve_default(&l, &permit, RouteIntegration::Unknown)
            .unwrap()
            .id,
        SL_ALICE_BAD
    );
}

#[test]
fn owner_template_validation() {
    assert!(validate_owner_template("{principal}").is_ok());
    assert!(validate_owner_template("member:{principal}").is_ok());
    assert!(validate_owner_template("static").is_err());
    assert!(validate_owner_template("{principal}:{user}").is_err());
}

/// Every reason the code can record is in [`REASONS`] and explained: the
/// permits and refusals listed here are checked to be all of them by the
/// exhaustive matches below (a new variant does not compile until it is
/// added here).
#[test]
fn every_reason_is_listed_and_explained() {
    use crate::error::Refused;
    let permits = [
        Permitted::Admin,
        Permitted::OwnerLabel,
        Permitted::CredentialsClaim,
        Permitted::Acl {
            grant: 0,
            everyone: false,
        },
        Permitted::PassthroughClaim { scope: "s".into() },
        Permitted::Rule { name: "r".into() },
        Permitted::Pdp,
        Permitted::NoCredential,
        Permitted::MetadataIgnored,
    ];
    for p in &permits {
        match p {
            Permitted::Admin
            | Permitted::OwnerLabel
            | Permitted::CredentialsClaim
            | Permitted::Acl { .. }
            | Permitted::PassthroughClaim { .. }
            | Permitted::Rule { .. }
            | Permitted::Pdp
            | Permitted::NoCredential
            | Permitted::MetadataIgnored => {}
        }
    }
    let refusals = [
        Refused::NotInList,
        Refused::OtherUser,
        Refused::OtherIntegration,
        Refused::NoGrant,
        Refused::Ambiguous,
        Refused::ProductNotAllowed,
        Refused::AdminOnly,
        Refused::HostNotAllowed,
        Refused::AccountAuth,
        Refused::SyncNotOwned,
        Refused::Rule,
        Refused::OwnerLabelMismatch,
    ];
    for r in refusals {
        match r {
            Refused::NotInList
            | Refused::OtherUser
            | Refused::OtherIntegration
            | Refused::NoGrant
            | Refused::Ambiguous
            | Refused::ProductNotAllowed
            | Refused::AdminOnly
            | Refused::HostNotAllowed
            | Refused::AccountAuth
            | Refused::SyncNotOwned
            | Refused::Rule
            | Refused::OwnerLabelMismatch => {}
        }
    }
    let limited = crate::error::GatewayError::RateLimited {
        retry_after: 1,
        scope: "principal",
    };
    let recorded = permits
        .iter()
        .map(Permitted::as_str)
        .chain(refusals.iter().map(|r| r.as_str()))
        .chain([limited.reason(), "client_closed"]);
    for reason in recorded {
        assert!(REASONS.contains(&reason), "{reason} is not in REASONS");
    }
    for reason in REASONS {
        assert!(
            explain_reason(reason).is_some(),
            "{reason} has no sentence in explain_reason"
        );
    }
}

/// contract §14: the decision point's answers are a fourth grant, after
/// the owner label, the token claim and the ACL (whose reasons win when
/// they also cover a credential); it is asked only about credentials no
/// such grant covers and that have no answer yet; admins and passthrough
/// callers never ask; an unanswered credential is not permitted.
#[test]
fn the_decision_point_is_a_fourth_grant_asked_only_where_it_matters() {
    let l = list();
    let p = policy(Some("{principal}"));
    let alice = member("alice", &[SL_BOB]);
    let answers = Arc::new(PdpAnswers::default());
    let permit = Permit::new(&alice, &p, None).with_pdp(answers.clone());
    let find = |id: &str| l.find(id).unwrap();
    // Her own (label) and the claimed one need no question; bob's
    // Salesforce account does, until answered.
    assert!(!permit.wants_pdp(find(SF_ALICE)));
    assert!(!permit.wants_pdp(find(SL_BOB)));
    assert!(permit.wants_pdp(find(SF_BOB)));
    assert!(!permit.allows(find(SF_BOB)), "unanswered: not permitted");
    answers.record(SF_BOB, true);
    answers.record(SL_ALICE1, true);
    assert!(!permit.wants_pdp(find(SF_BOB)), "answered");
    assert_eq!(permit.why(find(SF_BOB)), Some(Permitted::Pdp));
    // A label grant keeps its own reason.
    assert_eq!(permit.why(find(SL_ALICE1)), Some(Permitted::OwnerLabel));
    assert_eq!(Permitted::Pdp.as_str(), "pdp");
    // A refusal stands.
    let carol = member("carol", &[]);
    let refused = Arc::new(PdpAnswers::default());
    refused.record(SF_BOB, false);
    let permit = Permit::new(&carol, &p, None).with_pdp(refused);
    assert!(!permit.allows(find(SF_BOB)) && !permit.wants_pdp(find(SF_BOB)));
    // Without answers to fill, nobody asks.
    assert!(!Permit::new(&carol, &p, None).wants_pdp(find(SF_BOB)));
    let admin = Identity::new("acme".into(), "root".into(), Role::Admin, u64::MAX, None);
    let permit = Permit::new(&admin, &p, None).with_pdp(Arc::new(PdpAnswers::default()));
    assert!(!permit.wants_pdp(find(SF_BOB)) && permit.allows(find(SF_BOB)));
}

/// The candidates the decision point may be asked about are exactly those
/// the resolvers judge: the named id (or `ext:` label) of the route's
/// integration, the VALID ones of a known integration for a default.
#[test]
fn pdp_candidates_are_the_credentials_the_resolvers_judge() {
    let l = list();
    let sf = RouteIntegration::Known("salesforce");
    let slack = RouteIntegration::Known("slack");
    let by_id = Requested::Id(SF_BOB.into());
    assert_eq!(ids(named_candidates(&l, sf, &by_id)), vec![SF_BOB]);
    assert!(ids(named_candidates(&l, slack, &by_id)).is_empty());
    let unknown = Requested::Id("99999999-9999-9999-9999-999999999999".into());
    assert!(ids(named_candidates(&l, RouteIntegration::Unknown, &unknown)).is_empty());
    let ext = Requested::External("alice".into());
    assert_eq!(
        ids(named_candidates(&l, slack, &ext)),
        vec![SL_ALICE1, SL_ALICE2]
    );
    assert_eq!(
        ids(named_candidates(&l, RouteIntegration::Unknown, &ext)).len(),
        3
    );
    assert_eq!(
        ids(default_candidates(&l, slack)),
        vec![SL_ALICE1, SL_ALICE2, SL_BOB]
    );
    assert_eq!(
        ids(default_candidates(&l, RouteIntegration::Unknown)).len(),
        6
    );
}
