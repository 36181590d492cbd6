//! What an operator sees of `[cluster]` (contract §11; issue 29): a
//! PostgreSQL whose certificate a private CA issued is reached with
//! `sslmode=require` once `[cluster] ca_file` names the CA; without it, the
//! start log (at WARN/ERROR) and `credgate check-config --probe` name the
//! certificate error and what to set; PostgreSQL's NOTICEs are logged at
//! DEBUG, not INFO; and the harness finds PostgreSQL and Chromium on
//! `PATH`, not only at Debian's paths.
//!
//! One throwaway PostgreSQL for this file (see common/postgres.rs), with TLS
//! turned on (a server certificate for `localhost` from a private CA).

mod common;
// Its cut-off relay and restarts are tests/cluster.rs's.
#[allow(dead_code)]
#[path = "common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use postgres::Postgres;
use serde_json::Value;
use tokio::sync::OnceCell;

/// The server and the PEM certificate of the CA that issued its
/// certificate.
struct TlsPostgres {
    pg: Postgres,
    ca_pem: String,
}

static PG: OnceCell<TlsPostgres> = OnceCell::const_new();

/// A private CA, and a certificate it issued for `localhost` (not
/// `127.0.0.1`: a URL naming the address is refused by host name).
fn private_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "credgate test private CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

async fn pg() -> &'static TlsPostgres {
    PG.get_or_init(|| async {
        let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
        let (ca_pem, cert, key) = private_ca();
        let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // In the data directory, removed with the server; owned by the
        // server's user, the key readable by it alone (PostgreSQL refuses
        // a key others can read).
        let data: String = client
            .query_one("SHOW data_directory", &[])
            .await
            .unwrap()
            .get(0);
        let (cert_path, key_path) = (
            format!("{data}/test-server.crt"),
            format!("{data}/test-server.key"),
        );
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres", &cert_path, &key_path])
            .status();
        // One statement each: ALTER SYSTEM refuses a transaction block.
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{cert_path}'"),
            format!("ALTER SYSTEM SET ssl_key_file = '{key_path}'"),
            "ALTER SYSTEM SET ssl = on".to_string(),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            client.batch_execute(&sql).await.unwrap();
        }
        let on = postgres::eventually(Duration::from_secs(10), || async {
            let (c, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let v: String = c.query_one("SHOW ssl", &[]).await.unwrap().get(0);
            v == "on"
        })
        .await;
        assert!(on, "PostgreSQL turned TLS on");
        TlsPostgres { pg, ca_pem }
    })
    .await
}

/// A fresh database: its URL over TLS by `host` with `sslmode`.
async fn tls_db(host: &str, sslmode: &str) -> String {
    let pg = pg().await;
    let name = format!(
        "credgate_{}",
        credgate::keygen::random_bytes::<5>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    pg.pg.database(&name).await;
    format!(
        "postgres://postgres@{host}:{}/{name}?sslmode={sslmode}",
        pg.pg.port
    )
}

/// The builder's config with `[cluster]`, written next to the keys (where
/// `pg-ca.pem`, the CA's certificate, is too).
fn cluster_config(keys: &Keys, url: &str, extra: &str) -> std::path::PathBuf {
    let mut b = ConfigBuilder::new(keys, Hosts::all("http://127.0.0.1:9"));
    b.extra_top =
        format!("[cluster]\npostgres_url = \"{url}\"\npoll_interval = \"200ms\"\n{extra}\n");
    keys.dir.write("credgate.toml", &b.toml())
}

struct Probe {
    code: Option<i32>,
    stderr: String,
}

fn probe(config: &Path) -> Probe {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["check-config", "--probe", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Probe {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The JSON log lines of a child credgate.
fn json_lines(bin: &Binary) -> Vec<Value> {
    bin.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What works: `sslmode=require` to a server certificate issued by a
/// private CA, with the CA in `[cluster] ca_file`: the replica records
/// invalidations (an admin invalidate answers 200, not 503), and the probe
/// says PostgreSQL answered.
#[tokio::test]
async fn a_private_ca_in_ca_file_connects_with_sslmode_require() {
    let keys = Keys::new();
    keys.dir.write("pg-ca.pem", &pg().await.ca_pem);
    let url = tls_db("localhost", "require").await;
    let config = cluster_config(&keys, &url, "ca_file = \"pg-ca.pem\"");

    let p = probe(&config);
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert!(p.stderr.contains("PostgreSQL answered"), "{}", p.stderr);

    let bin = Binary::serve(&config, &[]);
    let req = http::Request::post(format!("http://{}/admin/cache/invalidate", bin.admin_addr))
        .header("content-type", "application/json")
        .body(credgate::net::body::full(r#"{"user": "acme"}"#))
        .unwrap();
    let got = send(&client(), req).await;
    assert_eq!(
        got.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&got.body),
        bin.log_text()
    );
    assert!(
        !bin.log_text().contains("degraded"),
        "not degraded: {}",
        bin.log_text()
    );
}

/// Without `ca_file` the private CA is unknown: the replica starts
/// degraded, and the start log, at WARN or ERROR, names the certificate
/// error (rustls's `UnknownIssuer`, not only "error performing TLS
/// handshake") and what to set; `check-config --probe` exits 1 saying the
/// same. With the CA but a URL naming an address the certificate does not
/// list, the host name check is named (credgate verifies it for `require`,
/// unlike libpq).
#[tokio::test]
async fn without_ca_file_the_log_and_the_probe_name_the_certificate_error() {
    let keys = Keys::new();
    let url = tls_db("localhost", "require").await;
    let config = cluster_config(&keys, &url, "");

    let p = probe(&config);
    assert_eq!(p.code, Some(1), "{}", p.stderr);
    for needle in ["UnknownIssuer", "set [cluster] ca_file", "unlike libpq"] {
        assert!(p.stderr.contains(needle), "{needle}: {}", p.stderr);
    }

    let bin = Binary::serve(&config, &[]);
    bin.wait_for_log("UnknownIssuer").await;
    let named: Vec<Value> = json_lines(&bin)
        .into_iter()
        .filter(|l| {
            l["error"]
                .as_str()
                .is_some_and(|e| e.contains("UnknownIssuer"))
        })
        .collect();
    assert!(!named.is_empty(), "{}", bin.log_text());
    for line in &named {
        assert!(
            line["level"] == "WARN" || line["level"] == "ERROR",
            "{line}"
        );
        let error = line["error"].as_str().unwrap();
        assert!(error.contains("error performing TLS handshake"), "{error}");
        assert!(error.contains("ca_file"), "{error}");
    }

    keys.dir.write("pg-ca.pem", &pg().await.ca_pem);
    let by_address = tls_db("127.0.0.1", "require").await;
    let p = probe(&cluster_config(
        &keys,
        &by_address,
        "ca_file = \"pg-ca.pem\"",
    ));
    assert_eq!(p.code, Some(1), "{}", p.stderr);
    assert!(p.stderr.contains("not valid for name"), "{}", p.stderr);
    assert!(p.stderr.contains("host name"), "{}", p.stderr);
}

/// `CREATE TABLE IF NOT EXISTS` on a schema that exists makes PostgreSQL
/// send a NOTICE ("relation ... already exists, skipping") at every start:
/// it is logged at DEBUG (target `credgate::cluster`), never at INFO.
#[tokio::test]
async fn a_postgres_notice_is_logged_at_debug_not_info() {
    let keys = Keys::new();
    let name = format!(
        "credgate_{}",
        credgate::keygen::random_bytes::<5>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let url = pg().await.pg.database(&name).await;
    let config = cluster_config(&keys, &url, "");
    // The first start creates the schema; the second finds it.
    drop(Binary::serve(&config, &[]));
    let bin = Binary::serve(&config, &[("RUST_LOG", "info,credgate::cluster=debug")]);
    bin.wait_for_log("already exists").await;
    let lines = json_lines(&bin);
    let notices: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains("already exists"))
        .collect();
    assert!(!notices.is_empty(), "{}", bin.log_text());
    for n in &notices {
        assert_eq!(n["level"], "DEBUG", "{n}");
        assert_eq!(n["message"], "PostgreSQL notice", "{n}");
    }
}

/// The harness looks PostgreSQL's programs and Chromium up on `PATH` too
/// (Fedora, Arch, Homebrew), a symlink resolved to the directory that also
/// holds `initdb`.
#[test]
fn the_harness_finds_postgres_and_chromium_on_path() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = TempDir::new("path-lookup");
    let real = scratch.0.join("cellar/postgresql/bin");
    let links = scratch.0.join("bin");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&links).unwrap();
    for tool in ["pg_ctl", "initdb", "postgres"] {
        let p = real.join(tool);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(real.join("pg_ctl"), links.join("pg_ctl")).unwrap();
    let chrome = links.join("google-chrome");
    std::fs::write(&chrome, "#!/bin/sh\n").unwrap();
    let path = std::env::join_paths([scratch.0.join("empty"), links.clone()]).unwrap();
    let no_debian = scratch.0.join("no-usr-lib-postgresql");

    assert_eq!(
        postgres::find_bin_dir(&no_debian, &path),
        Some(std::fs::canonicalize(&real).unwrap())
    );
    assert_eq!(common::browser::find_chromium(&path), Some(chrome));
    // Nothing on PATH and no Debian directory: not found (the harness
    // then says what to install).
    let empty = std::env::join_paths([scratch.0.join("empty")]).unwrap();
    assert_eq!(postgres::find_bin_dir(&no_debian, &empty), None);
}

/// The shipped gateway manifest says how to trust PostgreSQL behind a
/// private CA (`ca_file`, and that `require` verifies here), and, since
/// its preStop hook is the `sleep` handler, the Kubernetes version it
/// needs and why.
#[test]
fn the_gateway_manifest_says_how_to_trust_a_private_ca_and_what_kubernetes_it_needs() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/gateway/credgate.yaml"),
    )
    .unwrap();
    for needle in [
        "ca_file = \"/etc/credgate/keys/postgres-ca.pem\"",
        "--from-file=postgres-ca.pem=",
        "unlike libpq",
        "CA:TRUE",
        "check-config --probe",
    ] {
        assert!(manifest.contains(needle), "{needle}");
    }
    if manifest.contains("sleep: {seconds:") {
        assert!(
            manifest.contains("Needs Kubernetes 1.30 or later")
                && manifest.contains("PodLifecycleSleepAction"),
            "the manifest names the Kubernetes it needs for preStop sleep"
        );
    }
}
