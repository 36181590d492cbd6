//! What ships in `deploy/` and `config/` works as written: every config
//! embedded in a manifest or example validates with `credgate check-config`
//! once its `REPLACE-WITH-...` placeholders are filled (and is refused, naming
//! the placeholder, until they are); the systemd install steps run in a
//! fresh root and leave the files the unit can read; the unit passes
//! `systemd-analyze verify`. (The manifests themselves are checked against
//! Kubernetes' schemas by `deploy/validate.sh`, in `.ci/run`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The block scalars (`name: |`) of a YAML file whose key ends in `.toml`:
/// `(key, text)`, the text de-indented. Enough YAML for a ConfigMap.
fn toml_blocks(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(key) = trimmed.strip_suffix(": |") {
            if key.ends_with(".toml") {
                let indent = line.len() - trimmed.len();
                let mut text = String::new();
                let mut block_indent = None;
                let mut j = i + 1;
                while j < lines.len() {
                    let l = lines[j];
                    let t = l.trim_start();
                    let ind = l.len() - t.len();
                    if !t.is_empty() && ind <= indent {
                        break;
                    }
                    let bi = *block_indent.get_or_insert(ind);
                    text.push_str(l.get(bi..).unwrap_or(""));
                    text.push('\n');
                    j += 1;
                }
                out.push((key.to_string(), text));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Placeholders filled in as an operator would.
fn fill(text: &str) -> String {
    let mut t = text
        .replace("REPLACE-WITH-YOUR-PROJECT-ID", PROJECT)
        .replace("REPLACE-WITH-YOUR-IDP", "idp.example.com")
        .replace("REPLACE-WITH-YOUR-AUDIENCE", "credgate");
    while let Some(at) = t.find("REPLACE-WITH-") {
        let end = t[at..]
            .find(|c: char| !(c.is_ascii_uppercase() || c == '-'))
            .map_or(t.len(), |e| at + e);
        t.replace_range(at..end, "filled-in");
    }
    t
}

struct Checked {
    code: Option<i32>,
    stderr: String,
}

/// Runs `check-config` on `config` after moving its absolute
/// `/etc/credgate/...` paths into `dir`, where `files` are written.
fn check(dir: &Path, config: &str, files: &[(&str, String)]) -> Checked {
    let config = config.replace("/etc/credgate/", &format!("{}/", dir.display()));
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let path = dir.join("credgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env(
            "CREDGATE_PG_URL",
            "postgres://credgate@127.0.0.1:9/credgate",
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Checked {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every config in the Kubernetes manifests: refused as shipped (its
/// placeholders must be replaced), valid once they are.
#[test]
fn manifest_configs_validate_once_their_placeholders_are_filled() {
    let keys = Keys::new();
    let mut seen = 0;
    for manifest in [
        "deploy/kubernetes/gateway/credgate.yaml",
        "deploy/kubernetes/sidecar/app-with-credgate.yaml",
    ] {
        let yaml = std::fs::read_to_string(root().join(manifest)).unwrap();
        let blocks = toml_blocks(&yaml);
        let config = blocks
            .iter()
            .find(|(k, _)| k == "credgate.toml")
            .unwrap_or_else(|| panic!("{manifest} embeds credgate.toml"))
            .1
            .clone();
        let acl = blocks
            .iter()
            .find(|(k, _)| k == "acl.toml")
            .map(|(_, t)| t.clone());
        let files = |acl: Option<String>| {
            let mut f = vec![("keys/paragon-signing.pem", keys.paragon.private_pem.clone())];
            if let Some(a) = acl {
                f.push(("config/acl.toml", a));
            }
            f
        };
        let dir = TempDir::new("deploy");
        let shipped = check(&dir.0, &config, &files(acl.clone()));
        assert_eq!(shipped.code, Some(64), "{manifest}: {}", shipped.stderr);
        assert!(
            shipped.stderr.contains("placeholder"),
            "{manifest}: {}",
            shipped.stderr
        );

        let dir = TempDir::new("deploy");
        let filled = check(&dir.0, &fill(&config), &files(acl.as_deref().map(fill)));
        assert_eq!(filled.code, Some(0), "{manifest}: {}", filled.stderr);
        seen += 1;
    }
    assert_eq!(seen, 2);
}

/// The shipped gateway is coherent: several replicas and an autoscaler
/// only with `[cluster]` (sync ownership shared), its PostgreSQL URL from a
/// Secret that the manifest does not hold; Secrets readable through
/// `fsGroup`; no `:latest`; the admin listener of the sidecar on loopback,
/// probed from inside the pod; a native sidecar.
#[test]
fn the_manifests_are_coherent() {
    let gw =
        std::fs::read_to_string(root().join("deploy/kubernetes/gateway/credgate.yaml")).unwrap();
    let config = &toml_blocks(&gw)[0].1;
    assert!(gw.contains("replicas: 2") && gw.contains("kind: HorizontalPodAutoscaler"));
    assert!(
        config.contains("\n[cluster]\npostgres_url_env = \"CREDGATE_PG_URL\""),
        "{config}"
    );
    assert!(gw.contains("secretKeyRef: {name: credgate-postgres, key: url}"));
    assert!(config.contains("trusted_proxies = []"));
    let side =
        std::fs::read_to_string(root().join("deploy/kubernetes/sidecar/app-with-credgate.yaml"))
            .unwrap();
    let side_config = &toml_blocks(&side)[0].1;
    assert!(side_config.contains("admin_listen = \"127.0.0.1:9901\""));
    assert!(side_config.contains("audience = [\"REPLACE-WITH-YOUR-AUDIENCE\"]"));
    assert!(side.contains("initContainers:") && side.contains("restartPolicy: Always"));
    for (name, m) in [("gateway", &gw), ("sidecar", &side)] {
        assert!(
            !m.contains("kind: Secret"),
            "{name}: no Secret in an applied file"
        );
        assert!(!m.contains(":latest"), "{name}: a versioned image");
        assert!(
            m.contains("fsGroup: 10001") && m.contains("defaultMode: 0440"),
            "{name}"
        );
        assert!(
            !m.contains("httpGet"),
            "{name}: probes run credgate healthcheck in the pod"
        );
    }
}

/// The examples in config/: the gateway config validates as it is, and the
/// emulator fixtures load.
#[test]
fn the_example_configs_validate() {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["check-config", "--config"])
        .arg(root().join("config/credgate.example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    credgate::emulator::Fixtures::load(&root().join("config/emulator-fixtures.example.toml"))
        .unwrap();
}

/// The systemd install steps on a fresh root (copies of this machine's
/// /etc/passwd, group, shadow, gshadow, without a `credgate` group): the
/// group the unit names is created, the files are root:credgate with the
/// modes the unit's dynamic user reads through the group, the installed
/// config validates; running it again changes nothing; and the unit passes
/// `systemd-analyze verify`. Needs root (it sets file owners).
#[test]
fn the_systemd_install_steps_work_on_a_fresh_root() {
    assert_eq!(
        process_uid(),
        0,
        "this test installs files owned by root:credgate, as the real steps do: run it as root"
    );
    let keys = Keys::new();
    let fresh = TempDir::new("sysroot");
    std::fs::create_dir_all(fresh.0.join("etc")).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        let text = std::fs::read_to_string(Path::new("/etc").join(f)).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("credgate:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(fresh.0.join("etc").join(f), kept).unwrap();
    }
    let config = keys.dir.write(
        "to-install.toml",
        &ConfigBuilder::new(&keys, Hosts::all("https://zeus.useparagon.com"))
            .toml()
            .replace(
                "signing_key_file = \"paragon.pem\"",
                "signing_key_file = \"paragon-signing.pem\"",
            )
            .replace(
                "pem_file = \"idp.pub.pem\"",
                &format!(
                    "pem_file = \"{}\"",
                    keys.path().join("idp.pub.pem").display()
                ),
            )
            .replace("file = \"audit.jsonl\"", "enabled = true"),
    );
    let key = keys.path().join("paragon.pem");
    let install = || {
        Command::new(root().join("deploy/systemd/install.sh"))
            .arg("--root")
            .arg(&fresh.0)
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_credgate"))
            .arg("--config")
            .arg(&config)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    for round in 0..2 {
        let out = install();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let group = std::fs::read_to_string(fresh.0.join("etc/group")).unwrap();
    let lines: Vec<&str> = group
        .lines()
        .filter(|l| l.starts_with("credgate:"))
        .collect();
    assert_eq!(lines.len(), 1, "one credgate group: {lines:?}");
    let gid: u32 = lines[0].split(':').nth(2).unwrap().parse().unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for (path, mode) in [
        ("etc/credgate", 0o750),
        ("etc/credgate/credgate.toml", 0o640),
        ("etc/credgate/paragon-signing.pem", 0o640),
        ("usr/local/bin/credgate", 0o755),
        ("etc/systemd/system/credgate.service", 0o644),
    ] {
        let m = std::fs::metadata(fresh.0.join(path)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, mode, "{path}");
        assert_eq!(m.uid(), 0, "{path}");
        if path.starts_with("etc/credgate") {
            assert_eq!(m.gid(), gid, "{path}: group credgate");
        }
    }
    let unit =
        std::fs::read_to_string(fresh.0.join("etc/systemd/system/credgate.service")).unwrap();
    assert!(unit.contains("SupplementaryGroups=credgate") && unit.contains("DynamicUser=yes"));
    if let Ok(analyze) = which("systemd-analyze") {
        // Verified with the binary where this test built it.
        let copy = fresh.0.join("credgate.service");
        std::fs::write(
            &copy,
            unit.replace("/usr/local/bin/credgate", env!("CARGO_BIN_EXE_credgate")),
        )
        .unwrap();
        let out = Command::new(analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "systemd-analyze verify: {text}"
        );
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// This process's user id (from /proc, no libc call).
fn process_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

/// `rust-version` in Cargo.toml is the real minimum: the highest
/// `rust-version` of any locked dependency (an older toolchain cannot build
/// the lock file), read from `cargo metadata`.
#[test]
fn rust_version_is_what_the_lock_file_needs() {
    // This machine's platform only: offline, the packages of others (say
    // Android's, under chrono) have never been downloaded.
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resolved: std::collections::HashSet<&str> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let version = |s: &str| -> Vec<u32> { s.split('.').map(|x| x.parse().unwrap()).collect() };
    let mut needed: Vec<(Vec<u32>, String)> = Vec::new();
    let mut ours = None;
    for p in m["packages"].as_array().unwrap() {
        let rv = p["rust_version"].as_str();
        if p["name"] == "credgate" {
            ours = rv.map(version);
        } else if let (Some(rv), true) = (rv, resolved.contains(p["id"].as_str().unwrap())) {
            needed.push((version(rv), format!("{} {}", p["name"], p["version"])));
        }
    }
    needed.sort();
    let (max, who) = needed.last().unwrap().clone();
    let pad = |mut v: Vec<u32>| {
        v.resize(3, 0);
        v
    };
    assert_eq!(
        pad(ours.expect("Cargo.toml sets rust-version")),
        pad(max.clone()),
        "rust-version must be {max:?}, which {who} needs"
    );
}
