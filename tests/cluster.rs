//! Many replicas on one PostgreSQL (contract §11): invalidations fan out, sync
//! ownership is shared and survives restarts, degraded mode when the store
//! is unreachable, catch-up and the retention flush after a cut-off.
//!
//! A throwaway PostgreSQL is started for this file (see common/postgres.rs).

mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::time::Duration;

use common::*;
use credgate::app::Running;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use credgate::emulator::{self, Behaviour, EmulatorConfig, EmulatorHandle, Fixtures};
use credgate::net::body;
use http::Request;
use postgres::{eventually, Postgres, Relay};
use serde_json::json;
use tokio::sync::OnceCell;

static PG: OnceCell<Postgres> = OnceCell::const_new();

async fn pg() -> &'static Postgres {
    PG.get_or_init(|| async { tokio::task::spawn_blocking(Postgres::start).await.unwrap() })
        .await
}

async fn fresh_db() -> String {
    let name: String = format!(
        "credgate_{}",
        credgate::keygen::random_bytes::<5>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    pg().await.database(&name).await
}

async fn emulator(keys: &Keys) -> EmulatorHandle {
    emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys.paragon.public_pem.clone().into_bytes(),
    })
    .await
    .unwrap()
}

/// A replica: long TTLs, so only invalidations (not expiry) refresh lists.
async fn replica(keys: &Keys, emu: &EmulatorHandle, db_url: &str, cluster_extra: &str) -> Running {
    let mut b = ConfigBuilder::new(keys, Hosts::all(&emu.url()))
        .cache("credentials_ttl = \"1h\"\nrefresh_cooldown = \"1h\"");
    b.extra_top = format!(
        "[cluster]\npostgres_url = \"{db_url}\"\npoll_interval = \"200ms\"\n{cluster_extra}\n"
    );
    b.start().await
}

fn sf(gw: &Running) -> String {
    format!(
        "http://{}/projects/{PROJECT}/sdk/proxy/salesforce/x",
        gw.addr
    )
}

async fn status_with(gw: &Running, token: &str, credential: &str) -> u16 {
    let req = Request::get(sf(gw))
        .header("authorization", format!("Bearer {token}"))
        .header("x-paragon-credential", credential)
        .body(body::empty())
        .unwrap();
    send(&client(), req).await.status.as_u16()
}

async fn invalidate(gw: &Running, body_text: &'static str) -> u16 {
    let req = Request::post(format!("http://{}/admin/cache/invalidate", gw.admin_addr))
        .header("content-type", "application/json")
        .body(body::full(body_text))
        .unwrap();
    send(&client(), req).await.status.as_u16()
}

fn me_loads(emu: &EmulatorHandle) -> usize {
    emu.state
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/sdk/me"))
        .count()
}

#[tokio::test]
async fn an_invalidation_on_one_replica_reaches_the_other_within_two_seconds() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(&keys, &emu, &db, "").await;
    let alice = keys.member("acme", "alice");
    assert_eq!(status_with(&a, &alice, DEMO_SALESFORCE_ALICE).await, 200);
    assert_eq!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 200);

    // The account is disconnected in Paragon; B's cached list still has it.
    assert!(emu.state.remove_credential(DEMO_SALESFORCE_ALICE));
    assert_ne!(
        status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await,
        403,
        "B still trusts its cache"
    );

    assert_eq!(invalidate(&a, r#"{"user": "acme"}"#).await, 200);
    let refused = eventually(Duration::from_secs(2), || async {
        status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await == 403
    })
    .await;
    assert!(
        refused,
        "replica B dropped its list within 2 s of A's invalidation"
    );
    a.shutdown().await;
    b.shutdown().await;
}

async fn create_sync(gw: &Running, token: &str, credential: &str) -> String {
    let req = Request::post(format!("http://{}/api/syncs", gw.addr))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body::full(json!({"integration": "salesforce", "pipeline": "contacts", "credentialId": credential}).to_string()))
        .unwrap();
    let got = send(&client(), req).await;
    assert!(
        got.status.is_success(),
        "sync create: {} {:?}",
        got.status,
        got.body
    );
    got.json()["id"].as_str().unwrap().to_string()
}

async fn sync_status(gw: &Running, token: &str, sync: &str) -> u16 {
    get(
        &client(),
        &format!("http://{}/api/syncs/{sync}", gw.addr),
        Some(token),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn sync_ownership_is_shared_between_replicas_and_survives_restarts() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(&keys, &emu, &db, "").await;
    let (alice, bob) = (keys.member("acme", "alice"), keys.member("acme", "bob"));
    let sync = create_sync(&a, &alice, DEMO_SALESFORCE_ALICE).await;
    assert_eq!(
        sync_status(&b, &alice, &sync).await,
        200,
        "alice reaches her sync through B"
    );
    assert_eq!(
        sync_status(&a, &bob, &sync).await,
        403,
        "bob is refused through A"
    );
    assert_eq!(
        sync_status(&b, &bob, &sync).await,
        403,
        "bob is refused through B"
    );
    let bobs = create_sync(&b, &bob, DEMO_SALESFORCE_BOB).await;
    assert_eq!(sync_status(&a, &alice, &bobs).await, 403);

    // Both replicas restart: the record is in PostgreSQL.
    a.shutdown().await;
    b.shutdown().await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(&keys, &emu, &db, "").await;
    assert_eq!(sync_status(&a, &alice, &sync).await, 200);
    assert_eq!(sync_status(&b, &alice, &sync).await, 200);
    assert_eq!(sync_status(&b, &bob, &sync).await, 403);
    assert_eq!(sync_status(&a, &bob, &bobs).await, 200);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_load_in_flight_during_an_invalidation_does_not_resurrect_the_old_list() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(&keys, &emu, &db, "").await;
    let alice = keys.member("acme", "alice");
    emu.state.set_behaviour(Behaviour {
        me_delay_ms: 1500,
        ..Behaviour::default()
    });
    let b_url = sf(&b);
    let token = alice.clone();
    let slow = tokio::spawn(async move {
        let req = Request::get(b_url)
            .header("authorization", format!("Bearer {token}"))
            .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
            .body(body::empty())
            .unwrap();
        send(&client(), req).await.status.as_u16()
    });
    // B's /sdk/me load is in flight; A invalidates the user meanwhile.
    assert!(
        eventually(Duration::from_secs(5), || async {
            emu.state.in_flight() > 0
        })
        .await
    );
    assert_eq!(invalidate(&a, r#"{"user": "acme"}"#).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slow.await.unwrap(),
        200,
        "the in-flight request is answered"
    );
    emu.state.set_behaviour(Behaviour::default());
    let loads = me_loads(&emu);
    assert_eq!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 200);
    assert_eq!(
        me_loads(&emu),
        loads + 1,
        "the list loaded before the invalidation was not cached"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_cut_off_replica_degrades_then_catches_up_on_events_recorded_meanwhile() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let relay = Relay::start(pg().await.port).await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(
        &keys,
        &emu,
        &relay.url(&db, pg().await.port),
        "degraded_ttl = \"1h\"",
    )
    .await;
    let alice = keys.member("acme", "alice");
    let sync = create_sync(&a, &alice, DEMO_SALESFORCE_ALICE).await;
    assert_eq!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 200);

    relay.cut();
    let metrics = || async {
        String::from_utf8(
            get(&client(), &format!("http://{}/metrics", b.admin_addr), None)
                .await
                .body
                .to_vec(),
        )
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            metrics()
                .await
                .lines()
                .any(|l| l == "credgate_cluster_degraded 1")
        })
        .await,
        "B reports itself degraded"
    );
    // Degraded: cached decisions serve; writes and unknown syncs are 503; readiness stays green.
    assert_eq!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 200);
    assert_eq!(invalidate(&b, r#"{"user": "acme"}"#).await, 503);
    assert_eq!(
        sync_status(&b, &alice, &sync).await,
        503,
        "B never saw this sync's owner"
    );
    let posts_before = emu
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/syncs" && r.method == "POST")
        .count();
    let req = Request::post(format!("http://{}/api/syncs", b.addr))
        .header("authorization", format!("Bearer {alice}"))
        .body(body::full(json!({"integration": "salesforce", "pipeline": "p", "credentialId": DEMO_SALESFORCE_ALICE}).to_string()))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 503);
    let posts_after = emu
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/syncs" && r.method == "POST")
        .count();
    assert_eq!(
        posts_before, posts_after,
        "a refused sync create never reaches Paragon"
    );
    assert_eq!(
        get(&client(), &format!("http://{}/readyz", b.admin_addr), None)
            .await
            .status,
        200
    );

    // Meanwhile A records an invalidation B cannot see yet.
    emu.state.remove_credential(DEMO_SALESFORCE_ALICE);
    assert_eq!(invalidate(&a, r#"{"user": "acme"}"#).await, 200);
    assert_ne!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 403);

    relay.restore();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await == 403
        })
        .await,
        "after reconnecting B applied the event it missed"
    );
    assert!(metrics()
        .await
        .lines()
        .any(|l| l == "credgate_cluster_degraded 0"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_replica_away_longer_than_the_retention_flushes_its_caches() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let relay = Relay::start(pg().await.port).await;
    let b = replica(
        &keys,
        &emu,
        &relay.url(&db, pg().await.port),
        "degraded_ttl = \"1h\"\nevent_retention = \"1s\"",
    )
    .await;
    let alice = keys.member("acme", "alice");
    assert_eq!(status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await, 200);
    relay.cut();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Disconnected in Paragon with no event at all: only a flush can tell B.
    emu.state.remove_credential(DEMO_SALESFORCE_ALICE);
    relay.restore();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_with(&b, &alice, DEMO_SALESFORCE_ALICE).await == 403
        })
        .await,
        "B flushed its caches after a gap longer than event_retention"
    );
    b.shutdown().await;
}

/// Stops the real server: both replicas degrade; `strict` refuses
/// everything; starting it again recovers. Uses its own PostgreSQL so the
/// other tests keep theirs.
#[tokio::test]
async fn stopping_postgres_degrades_and_strict_mode_refuses_everything() {
    let own = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let db = own.database("credgate_stop").await;
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let lenient = replica(&keys, &emu, &db, "degraded_ttl = \"300ms\"").await;
    let strict = replica(&keys, &emu, &db, "strict = true").await;
    let alice = keys.member("acme", "alice");
    assert_eq!(
        status_with(&lenient, &alice, DEMO_SALESFORCE_ALICE).await,
        200
    );
    assert_eq!(
        status_with(&strict, &alice, DEMO_SALESFORCE_ALICE).await,
        200
    );

    let own = tokio::task::spawn_blocking(move || {
        own.stop();
        own
    })
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_with(&strict, &alice, DEMO_SALESFORCE_ALICE).await == 503
        })
        .await,
        "strict mode refuses every request while the store is down"
    );
    // Lenient: cached decisions keep serving, but only for degraded_ttl.
    assert_eq!(
        status_with(&lenient, &alice, DEMO_SALESFORCE_ALICE).await,
        200
    );
    emu.state.remove_credential(DEMO_SALESFORCE_ALICE);
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_with(&lenient, &alice, DEMO_SALESFORCE_ALICE).await == 403
        })
        .await,
        "with the store down, cached lists live at most degraded_ttl"
    );
    assert_eq!(
        get(
            &client(),
            &format!("http://{}/readyz", lenient.admin_addr),
            None
        )
        .await
        .status,
        200
    );

    let own = tokio::task::spawn_blocking(move || {
        own.restart();
        own
    })
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status_with(&strict, &alice, DEMO_SALESFORCE_BOB).await == 403
        })
        .await,
        "strict mode serves again (bob's credential is refused to alice, not 503)"
    );
    lenient.shutdown().await;
    strict.shutdown().await;
    drop(own);
}

/// Every path that invalidates records exactly the event the other replicas
/// need: admin (user and all), uninstall through credgate, a reload that
/// finds a credential gone, and sync create, update and delete.
#[tokio::test]
async fn every_mutating_path_records_an_event() {
    use credgate::emulator::fixtures::{DEMO_INTEGRATION_SALESFORCE, DEMO_SLACK_ALICE_2};
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let mut b = ConfigBuilder::new(&keys, Hosts::all(&emu.url()))
        .cache("credentials_ttl = \"1h\"\nrefresh_cooldown = \"0s\"");
    b.extra_top = format!("[cluster]\npostgres_url = \"{db}\"\npoll_interval = \"200ms\"\n");
    let gw = b.start().await;
    let (client_db, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let events = || async {
        client_db
            .query(
                "SELECT kind, COALESCE(subject, '') FROM credgate_events ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let alice = keys.member("acme", "alice");
    let admin = keys.admin("acme");
    let cl = client();

    assert_eq!(invalidate(&gw, r#"{"user": "acme"}"#).await, 200);
    assert_eq!(invalidate(&gw, "{}").await, 200);
    assert_eq!(
        events().await,
        vec![
            ("user".into(), "acme".into()),
            ("all".into(), String::new())
        ]
    );

    // A reload that finds a credential gone.
    assert_eq!(status_with(&gw, &alice, DEMO_SALESFORCE_ALICE).await, 200);
    emu.state.remove_credential(DEMO_SLACK_ALICE_2);
    let mut fresh = credgate::emulator::CredentialFixture::new(
        "a11ce000-0000-4000-8000-0000000000ff",
        "salesforce",
    );
    fresh.external_id = Some("alice".into());
    emu.state.add_credential("acme", fresh).unwrap();
    assert_eq!(
        status_with(&gw, &alice, "a11ce000-0000-4000-8000-0000000000ff").await,
        200
    );
    assert_eq!(
        events().await.last().unwrap(),
        &("user".to_string(), "acme".to_string())
    );
    let n = events().await.len();

    // Uninstall through credgate.
    let uninstall = Request::delete(format!(
        "http://{}/projects/{PROJECT}/sdk/integrations/{DEMO_INTEGRATION_SALESFORCE}",
        gw.addr
    ))
    .header("authorization", format!("Bearer {alice}"))
    .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
    .body(body::empty())
    .unwrap();
    assert!(send(&cl, uninstall).await.status.is_success());
    assert_eq!(events().await.len(), n + 1);
    assert_eq!(
        events().await.last().unwrap(),
        &("user".to_string(), "acme".to_string())
    );

    // Sync create, update, delete.
    let sync = create_sync(&gw, &alice, "a11ce000-0000-4000-8000-0000000000ff").await;
    assert_eq!(
        events().await.last().unwrap(),
        &("sync".to_string(), sync.clone())
    );
    let patch = Request::patch(format!("http://{}/api/syncs/{sync}", gw.addr))
        .header("authorization", format!("Bearer {admin}"))
        .body(body::full(
            json!({"credentialId": DEMO_SALESFORCE_BOB}).to_string(),
        ))
        .unwrap();
    assert!(send(&cl, patch).await.status.is_success());
    let delete = Request::delete(format!("http://{}/api/syncs/{sync}", gw.addr))
        .header("authorization", format!("Bearer {admin}"))
        .body(body::empty())
        .unwrap();
    assert!(send(&cl, delete).await.status.is_success());
    let tail: Vec<_> = events().await.into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        vec![
            ("sync".into(), sync.clone()),
            ("sync".into(), sync.clone()),
            ("sync".into(), sync)
        ]
    );
    gw.shutdown().await;
}

/// contract §5, §11: a member's `GET /api/syncs` over many syncs credgate never
/// recorded costs the store one query for the whole list, and ids the store
/// did not know are not asked again for a while; a sync recorded on another
/// replica afterwards is reachable there all the same.
#[tokio::test]
async fn unknown_sync_ids_are_looked_up_once_per_list_not_per_item() {
    let keys = Keys::new();
    let emu = emulator(&keys).await;
    let db = fresh_db().await;
    let a = replica(&keys, &emu, &db, "").await;
    let b = replica(&keys, &emu, &db, "").await;
    // Syncs made straight at Paragon, unknown to credgate.
    let now = credgate::auth::unix_now();
    let claims = json!({"sub": "acme", "aud": format!("useparagon.com/{PROJECT}"), "iat": now, "exp": now + 600});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.paragon.private_pem.as_bytes()).unwrap();
    let direct = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap();
    let mut direct_ids = Vec::new();
    for _ in 0..20 {
        let req = Request::post(format!("{}/api/syncs", emu.url()))
            .header("authorization", format!("Bearer {direct}"))
            .header("content-type", "application/json")
            .body(body::full(r#"{"integration":"salesforce","pipeline":"p"}"#))
            .unwrap();
        let got = send(&client(), req).await;
        assert_eq!(got.status, 200);
        direct_ids.push(got.json()["id"].as_str().unwrap().to_string());
    }
    let alice = keys.member("acme", "alice");
    let list = |gw: &Running| {
        let req = Request::get(format!("http://{}/api/syncs", gw.addr))
            .header("authorization", format!("Bearer {alice}"))
            .body(body::empty())
            .unwrap();
        async move { send(&client(), req).await }
    };
    let lookups = "credgate_cluster_sync_lookups_total";
    let before = metric(&scrape_metrics(&a).await, lookups);
    let got = list(&a).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["data"],
        json!([]),
        "none of them is alice's as far as credgate knows"
    );
    let after_first = metric(&scrape_metrics(&a).await, lookups);
    assert_eq!(after_first - before, 1.0, "one query for twenty ids");
    let got = list(&a).await;
    assert_eq!(got.json()["data"], json!([]));
    assert_eq!(
        metric(&scrape_metrics(&a).await, lookups),
        after_first,
        "unknown ids are remembered: no second query"
    );

    // An admin gives one of them to alice through B: A, which remembers
    // the id as unknown, hears of the record through the store's event
    // well before its negative entry would expire (10 s).
    let id = direct_ids[7].clone();
    let req = Request::patch(format!("http://{}/api/syncs/{id}", b.addr))
        .header("authorization", format!("Bearer {}", keys.admin("acme")))
        .header("content-type", "application/json")
        .body(body::full(format!(
            r#"{{"credentialId":"{DEMO_SALESFORCE_ALICE}"}}"#
        )))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 200);
    let seen = eventually(Duration::from_secs(3), || async {
        list(&a).await.json()["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|s| s["id"] == id.as_str()))
    })
    .await;
    assert!(seen, "A lists alice's new sync");
    a.shutdown().await;
    b.shutdown().await;
}
