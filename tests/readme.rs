//! The README's commands run as printed. A block marked
//! `<!-- recipe: NAME ... -->` is extracted and run by bash, with `cargo
//! run --` replaced by the built binary and the recipe's fixed loopback
//! ports by free ones (the same substitution in the config files it
//! reads), in a scratch copy of `config/`. Everything stays on 127.0.0.1.

mod common;

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

const RECIPE_DEADLINE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The fenced block right after `<!-- recipe: NAME`.
fn recipe(readme: &str, name: &str) -> String {
    let marker = format!("<!-- recipe: {name} ");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no recipe {name}"));
    let rest = &readme[at..];
    let open = rest.find("```sh\n").expect("recipe without a ```sh block") + "```sh\n".len();
    let close = rest[open..].find("\n```").expect("unclosed recipe block");
    rest[open..open + close + 1].to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `script` with bash in `dir`, in its own process group (killed, with
/// whatever the script left running, when it ends or at the deadline).
fn run_bash(dir: &Path, script: &str) -> (bool, String) {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > RECIPE_DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let ok = status.is_some_and(|s| s.success());
    if status.is_none() {
        out.push_str("\n[the recipe did not finish within its deadline]");
    }
    (ok, format!("{out}\n--- stderr ---\n{err}"))
}

#[test]
fn the_emulator_recipe_runs_as_printed() {
    let text = readme();
    let dir = TempDir::new("readme");
    copy_dir(&root().join("config"), &dir.0.join("config"));

    let ports = [
        ("127.0.0.1:8090", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:8080", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:9901", format!("127.0.0.1:{}", free_port())),
    ];
    let relocate = |s: &str| {
        ports
            .iter()
            .fold(s.to_string(), |s, (from, to)| s.replace(from, to))
    };
    let config = dir.0.join("config/credgate.emulator.toml");
    let text_of = std::fs::read_to_string(&config).unwrap();
    for (from, _) in &ports {
        assert!(
            text_of.contains(from),
            "the config and the recipe must agree on {from}"
        );
    }
    std::fs::write(&config, relocate(&text_of)).unwrap();

    let binary = env!("CARGO_BIN_EXE_credgate");
    let body = format!(
        "{}\n{}",
        recipe(&text, "emulator-keys"),
        recipe(&text, "emulator")
    );
    assert!(
        body.contains("cargo run -- serve --config config/credgate.emulator.toml"),
        "the recipe starts credgate with the shipped config"
    );
    let body = relocate(&body)
        .replace("cargo run -q --", binary)
        .replace("cargo run --", binary);
    let script = format!("set -euo pipefail\n{body}");
    let (ok, out) = run_bash(&dir.0, &script);
    assert!(ok, "the recipe failed:\n{out}");

    // alice's own account: 200, routed to it.
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-emulator-credential: a11ce000-5a1e-4000-8000-000000000001"),
        "{out}"
    );
    // bob's: refused by credgate.
    assert!(out.contains("credential_forbidden"), "{out}");
    assert!(out.contains("} 403"), "{out}");

    // The request log (the recipe's last output) shows what reached
    // Paragon: alice's call with her credential, never bob's.
    let log_line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no request log printed:\n{out}"));
    let log: serde_json::Value = serde_json::from_str(log_line).unwrap();
    let reached: Vec<&serde_json::Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains("/sdk/proxy/"))
        .collect();
    assert_eq!(reached.len(), 1, "{log:#}");
    assert!(!log_line.contains("b0b00000-5a1e-4000-8000-000000000001"));

    // The audit trail went where the config says, with both decisions.
    let audit = std::fs::read_to_string(dir.0.join("target/emulator/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["decision"] == "refused"
            && r["requested"] == "b0b00000-5a1e-4000-8000-000000000001"),
        "{audit}"
    );
}

#[test]
fn the_test_command_is_the_one_ci_runs() {
    let text = readme();
    let quick = &text[text.find("## Quick start").unwrap()..];
    let command = quick
        .lines()
        .skip_while(|l| !l.starts_with("Run the tests"))
        .find(|l| l.starts_with("    "))
        .expect("a test command in Quick start")
        .trim();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == command
            || l.trim().starts_with(&format!("{command} "))
            || l.trim() == format!("exec {command}")),
        "`.ci/run` must run `{command}`:\n{ci}"
    );
}

/// Every reason credgate records (contract §5a) has a row in the README's
/// reasons table, and every variable a policy rule can read is described
/// in the README and in `config/rules.example.toml`.
#[test]
fn every_reason_and_rule_variable_is_documented() {
    let text = readme();
    let table = &text[text.find("| reason |").expect("the reasons table")..];
    let table: String = table
        .lines()
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    for reason in credgate::policy::REASONS {
        assert!(
            table.contains(&format!("| `{reason}` |")),
            "the README's reasons table has no row for `{reason}`"
        );
    }
    let variables = &text[text.find("**Variables.**").expect("the rule variables")..];
    let variables = &variables[..variables.find("\n\n").unwrap()];
    let example = std::fs::read_to_string(root().join("config/rules.example.toml")).unwrap();
    for variable in credgate::config::rules::variables() {
        let (root_name, field) = variable.split_once('.').unwrap();
        // Written out (`request.tool`), or after its root's first field as
        // `.tool` in a list of that root's fields.
        let listed = |doc: &str| {
            doc.contains(&format!("`{variable}`"))
                || doc.contains(&variable)
                || (doc.contains(&format!("{root_name}.")) && doc.contains(&format!(".{field}")))
        };
        assert!(
            listed(variables),
            "the README does not describe `{variable}`"
        );
        assert!(
            listed(&example),
            "config/rules.example.toml does not mention `{variable}`"
        );
    }
}

/// The Quick start's commands, as printed: the demo command is the demo
/// (run with the built binary, on a free port, until it prints its
/// script), the test command is an executable script that parses, the
/// check-config line passes with the release binary's path replaced by
/// the built one, and nothing in it asks for a build the prose does not
/// promise (`cargo run` without `--release` would be a third build).
#[test]
fn the_quick_start_commands_run_as_printed() {
    let text = readme();
    let quick = &text[text.find("## Quick start").unwrap()..];
    let quick = &quick[..quick[3..].find("\n## ").unwrap() + 3];
    let commands: Vec<&str> = quick
        .lines()
        .filter(|l| l.starts_with("    ") && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    assert!(
        commands.contains(&"cargo run --release -- demo"),
        "{commands:?}"
    );
    assert!(commands.contains(&"./scripts/test"), "{commands:?}");
    let binary = env!("CARGO_BIN_EXE_credgate");
    for command in &commands {
        assert!(
            !command.starts_with("cargo run ") || command.starts_with("cargo run --release "),
            "`{command}`: a debug `cargo run` costs a build the Quick start does not promise"
        );
        if let Some(args) = command.strip_prefix("target/release/credgate ") {
            let out = Command::new(binary)
                .args(args.split_whitespace())
                .current_dir(root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "`{command}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else if *command == "./scripts/test" {
            let script = root().join("scripts/test");
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&script).unwrap().permissions(),
            );
            assert!(mode & 0o111 != 0, "scripts/test is not executable");
            let parsed = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(parsed.success(), "scripts/test does not parse");
        } else if let Some(args) = command.strip_prefix("cargo run --release -- ") {
            assert_eq!(args, "demo");
            let keys = TempDir::new("quickstart-demo");
            let mut child = Command::new(binary)
                .args(["demo", "--listen", "127.0.0.1:0"])
                .env("TMPDIR", &keys.0)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut seen = Vec::new();
            let deadline = Instant::now() + RECIPE_DEADLINE;
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("curl ") && Instant::now() < deadline {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                String::from_utf8_lossy(&seen).contains("curl "),
                "the demo printed no commands: {}",
                String::from_utf8_lossy(&seen)
            );
        }
    }
}
