//! The command line's smaller edges a newcomer hit (issue 29, item 11),
//! each run through the built binary: `check-config` reports every
//! placeholder at once and warns about a plain-text listener off loopback
//! and about one claim naming both the Connected User and the principal;
//! `healthcheck --config` probes the admin listener that file names;
//! `credgate access` prints quotes as they are and says when Paragon does
//! not know the user; `credgate emulator` removes its key directory when it
//! stops, however it stops. And the LICENSE file Cargo.toml promises.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use credgate::emulator::{self, EmulatorConfig, Fixtures};

fn credgate(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_credgate"));
    c.args(args).env_remove("RUST_LOG");
    c
}

fn check_config(config: &Path) -> Output {
    credgate(&["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn builder(keys: &Keys) -> ConfigBuilder<'_> {
    ConfigBuilder::new(keys, Hosts::all("http://127.0.0.1:9"))
}

/// Every `REPLACE-WITH-...` left in the config and in its ACL file is
/// named in one run (one line, exit 64), not one per run.
#[test]
fn check_config_reports_every_placeholder_at_once() {
    let keys = Keys::new();
    keys.dir.write(
        "acl.toml",
        "[[grant]]\nprincipal = \"REPLACE-WITH-A-PRINCIPAL\"\nusers = [\"acme\"]\nintegrations = [\"slack\"]\n",
    );
    let config = builder(&keys)
        .auth("issuer = \"https://REPLACE-WITH-YOUR-IDP/\"\naudience = [\"REPLACE-WITH-YOUR-AUDIENCE\"]")
        .policy("acl_file = \"acl.toml\"")
        .toml()
        .replace(PROJECT, "REPLACE-WITH-YOUR-PROJECT-ID");
    let out = check_config(&keys.dir.write("credgate.toml", &config));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("4 placeholders"), "{stderr}");
    for key in [
        "paragon.project_id (`REPLACE-WITH-YOUR-PROJECT-ID`)",
        "auth.issuer (`https://REPLACE-WITH-YOUR-IDP/`)",
        "auth.audience[1] (`REPLACE-WITH-YOUR-AUDIENCE`)",
        "policy.acl_file: grant[1].principal (`REPLACE-WITH-A-PRINCIPAL`)",
    ] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}

/// A traffic listener off loopback without TLS, and `user_claim ==
/// principal_claim` in mint mode, each get a warning (exit 0); with TLS,
/// on loopback, or with distinct claims, not.
#[test]
fn check_config_warns_about_plain_text_off_loopback_and_one_claim_for_both() {
    let keys = Keys::new();
    let (cert, key) = {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    };
    keys.dir.write("cert.pem", &cert);
    keys.dir.write("key.pem", &key);
    const PLAIN: &str = "is not a loopback address and server.tls is not set";
    const ONE_CLAIM: &str = "auth.user_claim and auth.principal_claim are both `sub`";
    let anywhere = |t: String| t.replace("\nlisten = \"127.0.0.1:0\"", "\nlisten = \"0.0.0.0:0\"");
    let one_claim = |t: String| t.replace("principal_claim = \"principal\"", "");
    let cases = [
        (anywhere(builder(&keys).toml()), Some(PLAIN)),
        (
            anywhere(
                builder(&keys)
                    .server("tls = { cert_file = \"cert.pem\", key_file = \"key.pem\" }")
                    .toml(),
            ),
            None,
        ),
        (one_claim(builder(&keys).toml()), Some(ONE_CLAIM)),
        (builder(&keys).toml(), None),
    ];
    for (config, warning) in cases {
        let out = check_config(&keys.dir.write("credgate.toml", &config));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        for w in [PLAIN, ONE_CLAIM] {
            let warned = stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(w));
            assert_eq!(warned, warning == Some(w), "{w}: {stderr}\n{config}");
        }
    }
}

/// `credgate healthcheck --config FILE` probes `/healthz` of the admin
/// listener FILE names (loopback for `0.0.0.0`); `--url` still wins.
#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_probes_the_admin_listener_its_config_names() {
    let keys = Keys::new();
    let b = builder(&keys);
    let gw = b.start().await;
    let port = gw.admin_addr.port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let healthz = |p: u16| format!("http://127.0.0.1:{p}/healthz");
    for (i, (admin_listen, url, code)) in [
        (format!("127.0.0.1:{port}"), None, 0),
        (format!("0.0.0.0:{port}"), None, 0),
        (format!("127.0.0.1:{closed_port}"), None, 1),
        (format!("127.0.0.1:{closed_port}"), Some(healthz(port)), 0),
    ]
    .into_iter()
    .enumerate()
    {
        let config = b.toml().replace(
            "admin_listen = \"127.0.0.1:0\"",
            &format!("admin_listen = \"{admin_listen}\""),
        );
        let path = keys.dir.write(&format!("hc-{i}.toml"), &config);
        let out = tokio::task::spawn_blocking(move || {
            let mut c = credgate(&["healthcheck", "--config"]);
            c.arg(path);
            if let Some(u) = url {
                c.args(["--url", &u]);
            }
            c.output().unwrap()
        })
        .await
        .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{admin_listen}: {stderr}");
        if code == 1 {
            // It names the URL it tried.
            assert!(stderr.contains(&healthz(closed_port)), "{stderr}");
        }
    }
    gw.shutdown().await;
}

/// `credgate access`'s table shows a name in quotes as `"alice"`, not
/// JSON-escaped as `\"alice\"`; for a user Paragon does not know (its 401
/// on /sdk/me) it says so, not a 503 with Paragon's status.
#[tokio::test(flavor = "multi_thread")]
async fn access_prints_quotes_as_they_are_and_names_an_unknown_user() {
    let keys = Keys::new();
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys.paragon.public_pem.clone().into_bytes(),
    })
    .await
    .unwrap();
    let gw = ConfigBuilder::new(&keys, Hosts::all(&emu.url()))
        .start()
        .await;
    let admin = format!("http://{}", gw.admin_addr);
    let access = |user: &'static str| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            credgate(&["access", "--admin", &admin, "--user", user])
                .output()
                .unwrap()
        })
    };
    let table = access("acme").await.unwrap();
    let stdout = text(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert!(
        stdout.contains("the member whose principal is \"alice\""),
        "{stdout}"
    );
    assert!(!stdout.contains('\\'), "no escaped quote: {stdout}");

    let nobody = access("nobody").await.unwrap();
    let stderr = text(&nobody.stderr);
    assert_eq!(nobody.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Connected User \"nobody\" is unknown to Paragon"),
        "{stderr}"
    );
    assert!(stderr.contains("404"), "{stderr}");
    assert!(!stderr.contains("503"), "{stderr}");
    gw.shutdown().await;
    emu.shutdown().await;
}

/// Starts `credgate emulator` with throwaway keys on `listen`: the child,
/// the directory it printed its keys in, and its other output lines as
/// they come.
fn emulator_with_keys(
    listen: &str,
) -> (
    std::process::Child,
    std::path::PathBuf,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = credgate(&["emulator", "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok);
    let key = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("project signing key (sign user tokens with it): ")
                .map(std::path::PathBuf::from)
        })
        .expect("the emulator prints its signing key's path");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.for_each(|l| drop(tx.send(l))));
    (child, key.parent().unwrap().to_path_buf(), rx)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the emulator did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The emulator's throwaway key directory is gone once it stops: on
/// SIGTERM, and when it cannot start (its port is taken).
#[test]
fn the_emulator_removes_its_key_directory_when_it_stops() {
    let (mut child, dir, lines) = emulator_with_keys("127.0.0.1:0");
    assert!(dir.join("paragon-signing.pem").is_file());
    // Serving (its last line), then a moment to wait for a signal.
    let up = lines.iter().any(|l| l.starts_with("control API: "));
    assert!(up, "the emulator started");
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_exit(&mut child).success());
    assert!(!dir.exists(), "{} is left behind", dir.display());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut child, dir, _) = emulator_with_keys(&taken.local_addr().unwrap().to_string());
    assert!(!wait_exit(&mut child).success(), "the port is taken");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Cargo.toml says Apache-2.0, and the repository carries that license's
/// text.
#[test]
fn the_license_file_is_the_one_cargo_toml_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("\nlicense = \"Apache-2.0\"\n"), "{cargo}");
    let license = std::fs::read_to_string(root.join("LICENSE")).expect("a LICENSE file");
    let head: Vec<&str> = license
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    assert_eq!(
        head,
        [
            "Apache License",
            "Version 2.0, January 2004",
            "http://www.apache.org/licenses/"
        ]
    );
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
}

/// `[cluster] ca_file` is checked (a PEM certificate, relative to the
/// config's directory) and printed by `check-config`.
#[test]
fn check_config_reads_and_prints_the_cluster_ca_file() {
    let keys = Keys::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    keys.dir
        .write("pg-ca.pem", &ca.self_signed(&key).unwrap().pem());
    let mut b = builder(&keys);
    b.extra_top = "[cluster]\npostgres_url = \"postgres://credgate@127.0.0.1:9/credgate?sslmode=require\"\nca_file = \"pg-ca.pem\"\n".into();
    let out = check_config(&keys.dir.write("credgate.toml", &b.toml()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t: toml::Table = toml::from_str(&text(&out.stdout)).unwrap();
    let printed = t["cluster"]["ca_file"].as_str().unwrap();
    assert_eq!(Path::new(printed), keys.path().join("pg-ca.pem"));

    keys.dir.write("pg-ca.pem", &key.serialize_pem());
    let out = check_config(&keys.dir.write("credgate.toml", &b.toml()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("`cluster.ca_file`"), "{stderr}");
    assert!(stderr.contains("holds a private key"), "{stderr}");
}
