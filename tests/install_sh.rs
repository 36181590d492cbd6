//! `deploy/systemd/install.sh` (issue 29, item 4) against a scratch root:
//! it reads the paths the config names instead of assuming file names,
//! installs every one of them under the name the config gives it (each
//! kind: Paragon's keys and CA, the IdP's keys, the ACL and rules files,
//! TLS certificate and key, the cluster's CA; relative paths under
//! /etc/credgate, an absolute one at its path), makes the audit file's
//! directory, and checks everything before it changes anything: a config
//! naming a missing file, an audit file the unit cannot write, or a config
//! that does not validate as installed fails with nothing written.
//!
//! Run unprivileged-style (`CREDGATE_INSTALL_SKIP_ACCOUNTS=1`: no group, no
//! owners); tests/deploy.rs runs the steps as root with the group.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn install_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/install.sh")
}

/// A certificate (and its key) as PEM.
fn certificate(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A config and every kind of file it can name, prepared in `src` as an
/// operator would (relative paths beside the config), plus one IdP key at
/// an absolute path. Returns the config's path and the relative files.
fn prepare(keys: &Keys, src: &Path) -> (PathBuf, Vec<(&'static str, String)>) {
    let (tls_cert, tls_key) = certificate("localhost");
    let (paragon_ca, _) = certificate("paragon.internal");
    let (pg_ca, _) = certificate("db.internal");
    let other_idp = credgate::keygen::rsa().unwrap();
    let files: Vec<(&'static str, String)> = vec![
        ("keys/paragon-signing.pem", keys.paragon.private_pem.clone()),
        ("keys/paragon-public.pem", keys.paragon.public_pem.clone()),
        ("paragon-ca.pem", paragon_ca),
        ("keys/idp.pem", keys.idp.public_pem.clone()),
        (
            "policy/acl.toml",
            "[[grant]]\nprincipal = \"alice\"\nusers = [\"acme\"]\nintegrations = [\"slack\"]\n"
                .into(),
        ),
        (
            "policy/rules.toml",
            "[[rule]]\nname = \"no-deletes\"\neffect = \"deny\"\nwhen = \"request.method == 'DELETE'\"\n"
                .into(),
        ),
        ("tls/cert.pem", tls_cert),
        ("tls/key.pem", tls_key),
        ("pg-ca.pem", pg_ca),
    ];
    for (name, text) in &files {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let absolute = src.join("elsewhere/idp-2.pem");
    std::fs::create_dir_all(absolute.parent().unwrap()).unwrap();
    std::fs::write(&absolute, &other_idp.public_pem).unwrap();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:8443"
admin_listen = "127.0.0.1:9901"
tls = {{ cert_file = "tls/cert.pem", key_file = "tls/key.pem" }}

[paragon]
project_id = "{PROJECT}"
signing_key_file = "keys/paragon-signing.pem"
public_key_file = "keys/paragon-public.pem"
ca_file = "paragon-ca.pem"

[auth]
principal_claim = "principal"
user_claim = "org"

[[auth.keys]]
algorithm = "RS256"
pem_file = "keys/idp.pem"
kid = "one"

[[auth.keys]]
algorithm = "RS256"
pem_file = "{absolute}"
kid = "two"

[policy]
acl_file = "policy/acl.toml"
rules_file = "policy/rules.toml"

[audit]
file = "/var/log/credgate/audit.jsonl"

[cluster]
postgres_url = "postgres://credgate@127.0.0.1:9/credgate?sslmode=require"
ca_file = "pg-ca.pem"
"#,
        absolute = absolute.display()
    );
    let path = src.join("credgate.toml");
    std::fs::write(&path, config).unwrap();
    (path, files)
}

fn install(root: &Path, config: &Path) -> Output {
    Command::new(install_sh())
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_credgate"))
        .arg("--config")
        .arg(config)
        .env("CREDGATE_INSTALL_SKIP_ACCOUNTS", "1")
        .env_remove("DESTDIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every entry under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_file_the_config_names_is_installed_under_its_name() {
    let keys = Keys::new();
    let src = TempDir::new("install-src");
    let root = TempDir::new("install-root");
    let (config, files) = prepare(&keys, &src.0);

    // Twice: a second run changes nothing and succeeds.
    for round in 0..2 {
        let out = install(&root.0, &config);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let etc = root.0.join("etc/credgate");
    assert_eq!(
        std::fs::read_to_string(etc.join("credgate.toml")).unwrap(),
        std::fs::read_to_string(&config).unwrap()
    );
    assert_eq!(mode(&etc.join("credgate.toml")), 0o640);
    for (name, text) in &files {
        let p = etc.join(name);
        assert_eq!(&std::fs::read_to_string(&p).unwrap(), text, "{name}");
        assert_eq!(mode(&p), 0o640, "{name}");
    }
    for dir in ["", "keys", "policy", "tls"] {
        assert_eq!(mode(&etc.join(dir)), 0o750, "etc/credgate/{dir}");
    }
    // The absolute path: at that path under the root.
    let absolute = src.0.join("elsewhere/idp-2.pem");
    let copied = root.0.join(absolute.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&absolute).unwrap()
    );
    assert!(
        root.0.join("var/log/credgate").is_dir(),
        "the audit directory"
    );
    assert!(!root.0.join("var/log/credgate/audit.jsonl").exists());
    assert_eq!(mode(&root.0.join("usr/local/bin/credgate")), 0o755);
    assert_eq!(
        mode(&root.0.join("etc/systemd/system/credgate.service")),
        0o644
    );
    // Nothing else in /etc/credgate than the config and its files.
    let mut expected: Vec<String> = files
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(["credgate.toml", "keys", "policy", "tls"].map(String::from))
        .collect();
    expected.sort();
    assert_eq!(tree(&etc), expected);
}

/// Each check fails before anything is written: the root stays empty, and
/// the message names the key and the file (or says why).
#[test]
fn a_config_naming_a_missing_file_fails_before_anything_is_written() {
    let keys = Keys::new();
    let src = TempDir::new("install-src");
    let (config, _) = prepare(&keys, &src.0);
    let text = std::fs::read_to_string(&config).unwrap();
    // (what, how the prepared files are broken, what the message says)
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a missing rules file",
            Box::new(|| std::fs::remove_file(src.0.join("policy/rules.toml")).unwrap()),
            "policy.rules_file = \"policy/rules.toml\"",
        ),
        (
            "a missing TLS key",
            Box::new(|| std::fs::remove_file(src.0.join("tls/key.pem")).unwrap()),
            "server.tls.key_file = \"tls/key.pem\"",
        ),
        (
            "a missing key at an absolute path",
            Box::new(|| std::fs::remove_file(src.0.join("elsewhere/idp-2.pem")).unwrap()),
            "auth.keys[2].pem_file",
        ),
        (
            "an audit file the unit cannot write",
            Box::new(|| {
                std::fs::write(
                    &config,
                    text.replace("/var/log/credgate/audit.jsonl", "/srv/audit.jsonl"),
                )
                .unwrap()
            }),
            "may write only in /var/log/credgate/",
        ),
        (
            "a path leaving /etc/credgate",
            Box::new(|| {
                std::fs::write(&config, text.replace("\"pg-ca.pem\"", "\"../pg-ca.pem\"")).unwrap()
            }),
            "cluster.ca_file = \"../pg-ca.pem\"",
        ),
        (
            "a config that does not validate as installed",
            Box::new(|| std::fs::write(src.0.join("policy/acl.toml"), "[[grant]]\n").unwrap()),
            "does not validate as it would be installed",
        ),
        (
            "a misspelt key",
            Box::new(|| std::fs::write(&config, text.replace("rules_file", "rule_file")).unwrap()),
            "policy.rule_file",
        ),
    ];
    for (what, break_it, says) in cases {
        let (config, _) = prepare(&keys, &src.0);
        break_it();
        let root = TempDir::new("install-root");
        let out = install(&root.0, &config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert_eq!(
            tree(&root.0),
            Vec::<String>::new(),
            "{what}: nothing written"
        );
    }
}
