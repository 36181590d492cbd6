//! `credgate demo`, run as a new user would: the printed script, pasted
//! into bash as a whole, answers each command with the status its comment
//! says; nothing buries the script; Ctrl-C (SIGINT) stops everything and
//! removes the demo's keys, and so does a demo that cannot start.

mod common;

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TempDir;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};

/// The printed script's last line.
const LAST_LINE: &str = "# Ctrl-C stops the demo and deletes its keys.";

/// A child process killed (and waited for) when dropped, so a failed
/// assertion leaves no demo running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `credgate demo` with its temporary files under `tmp` (TMPDIR), its
/// stdout collected line by line.
fn spawn_demo(tmp: &Path, listen: &str) -> (Reaped, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["demo", "--listen", listen, "--log-format", "json"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(l);
        }
    });
    (Reaped(child), lines)
}

/// Waits for `child` at most `limit`, killing it past that.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{child:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A printed command: its comment's expected status and code, and the line.
#[derive(Debug)]
struct Step {
    status: u16,
    code: Option<String>,
    cmd: String,
}

fn steps(script: &[String]) -> Vec<Step> {
    script
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, l.strip_prefix("# expect: ")?)))
        .map(|(i, expect)| {
            let mut want = expect.split_whitespace();
            Step {
                status: want.next().unwrap().parse().expect("a status"),
                code: want.next().map(str::to_string),
                cmd: script[i + 1].clone(),
            }
        })
        .collect()
}

/// What each command printed: the output up to and including each line
/// that is a status alone (every printed command ends with one), then
/// what follows the last.
fn answers(out: &str) -> (Vec<(u16, String)>, String) {
    let mut done = Vec::new();
    let mut cur = String::new();
    for line in out.lines() {
        if line.len() == 3 && line.bytes().all(|b| b.is_ascii_digit()) {
            done.push((line.parse().unwrap(), std::mem::take(&mut cur)));
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    (done, cur)
}

#[test]
fn the_printed_script_pasted_whole_answers_as_each_comment_says() {
    let tmp = TempDir::new("demo-run");
    let (mut child, lines) = spawn_demo(&tmp.0, "127.0.0.1:0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines.lock().unwrap().iter().any(|l| l == LAST_LINE) {
        assert!(
            Instant::now() < deadline,
            "the demo did not print its script: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let printed = lines.lock().unwrap().clone();
    let end = printed.iter().position(|l| l == LAST_LINE).unwrap();
    let script = &printed[..=end];

    // Nothing above the script: its own warnings come after it, as
    // comments saying they are expected.
    assert!(
        script[0].starts_with("# credgate demo"),
        "the script comes first: {:?}",
        &script[..3]
    );
    assert!(
        !script.iter().any(|l| l.contains("\"level\"")),
        "no log line inside the script: {script:?}"
    );
    let heading = script
        .iter()
        .position(|l| l.starts_with("# Expected for the demo"))
        .expect("the demo's own warnings, under a heading");
    let first_cmd = script.iter().position(|l| l.starts_with("curl ")).unwrap();
    assert!(heading > first_cmd, "after the commands");
    assert!(script[heading..]
        .iter()
        .any(|l| l.starts_with("#   - ") && l.contains("owner_external_id")));

    // Where things are, the dashboard and the metrics included.
    let named = |what: &str| -> String {
        let prefix = format!("#   {what} ");
        script
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("the demo names its {what}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let dir = std::path::PathBuf::from(named("config and keys"));
    assert!(dir.starts_with(&tmp.0) && dir.join("credgate.toml").exists());
    let dashboard = named("dashboard");
    let metrics = named("metrics");
    assert!(dashboard.starts_with("http://127.0.0.1:") && dashboard.ends_with('/'));
    assert_eq!(metrics, format!("{dashboard}metrics"));

    let steps = steps(script);
    assert!(steps.len() >= 12, "{steps:?}");
    for s in &steps {
        assert!(
            s.cmd.contains(r"-w '\n%{http_code}\n'"),
            "every command prints its status on a line of its own: {}",
            s.cmd
        );
    }

    // The script exactly as printed, in one bash, as a paste would run it.
    let file = tmp.0.join("pasted.sh");
    std::fs::write(&file, script.join("\n") + "\n").unwrap();
    let mut bash = Reaped(
        Command::new("bash")
            .args(["--noprofile", "--norc"])
            .arg(&file)
            // No proxy and no ~/.curlrc of this machine's between curl and
            // loopback.
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .env("CURL_HOME", &tmp.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read in threads, so a hung command ends in `wait_bounded`'s kill.
    let drain = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            from.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(bash.0.stdout.take().unwrap()));
    let err = drain(Box::new(bash.0.stderr.take().unwrap()));
    let status = wait_bounded(&mut bash.0, Duration::from_secs(60));
    let (out, err_text) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{status:?}: {err_text}\n{out}");
    assert_eq!(err_text, "", "the script runs without an error");

    let (got, rest) = answers(&out);
    assert_eq!(
        got.len(),
        steps.len(),
        "one status line per command:\n{out}"
    );
    for (step, (status, body)) in steps.iter().zip(&got) {
        assert_eq!(*status, step.status, "{}\n{body}", step.cmd);
        if let Some(code) = &step.code {
            assert!(body.contains(code.as_str()), "{code}: {}\n{body}", step.cmd);
        }
    }
    assert!(
        rest.contains("{\"mcpServers\""),
        "the MCP client entry: {rest}"
    );

    // What the answers show, as their comments say.
    let answer = |needle: &str| -> &str {
        let i = steps
            .iter()
            .position(|s| s.cmd.contains(needle))
            .unwrap_or_else(|| panic!("a command with {needle}"));
        &got[i].1
    };
    let bob_me = answer("/sdk/me");
    assert!(
        bob_me.contains(DEMO_SALESFORCE_BOB) && !bob_me.contains("a11ce000"),
        "bob sees only his own accounts: {bob_me}"
    );
    let initialize = answer("\"method\":\"initialize\"");
    assert!(
        initialize
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("mcp-session-id: ")),
        "the session's header is shown: {initialize}"
    );
    let tools = answer("\"method\":\"tools/list\"");
    assert!(
        tools.contains(DEMO_SALESFORCE_ALICE) && !tools.contains("b0b00000"),
        "alice's tools offer only her accounts: {tools}"
    );
    let counted = answer("/metrics");
    assert!(
        counted.contains(
            "credgate_requests_total{product=\"proxy\",decision=\"refused\",status=\"403\"} 1"
        ),
        "{counted}"
    );

    // Ctrl-C stops everything and removes the keys.
    let ok = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = wait_bounded(&mut child.0, Duration::from_secs(30));
    assert!(status.success());
    assert!(!dir.exists(), "the demo's keys are deleted on exit");
}

#[test]
fn a_demo_that_cannot_start_removes_what_it_created() {
    let tmp = TempDir::new("demo-busy");
    // The port is taken: the gateway cannot listen there.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("TMPDIR", &tmp.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut demo, Duration::from_secs(30));
    drop(taken);
    let mut stderr = String::new();
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&format!("is port {port} in use")),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}
