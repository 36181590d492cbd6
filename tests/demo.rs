//! `credgate demo`, run as a new user would: the printed commands give the
//! outcomes the demo says they will, and Ctrl-C (SIGINT) stops everything
//! and removes the demo's keys.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;
use credgate::net::body;
use http::Request;

/// Splits a shell command line on spaces, honouring '...' and "..." and
/// expanding `$NAME` from `vars` inside double quotes and bare words.
fn shell_words(line: &str, vars: &HashMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String| {
        let mut name = String::new();
        while let Some(c) = chars.peek() {
            if c.is_ascii_alphanumeric() || *c == '_' {
                name.push(*c);
                chars.next();
            } else {
                break;
            }
        }
        out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' if in_word => {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            ' ' => {}
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '$' => expand(&mut chars, &mut cur),
                        c => cur.push(c),
                    }
                }
            }
            '$' => {
                in_word = true;
                expand(&mut chars, &mut cur);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// A curl command line as a request.
fn curl_request(words: &[String]) -> Request<credgate::net::body::Body> {
    assert_eq!(words[0], "curl");
    let (mut method, mut url, mut data) = (None, None, None);
    let mut b = Request::builder();
    let mut i = 1;
    while i < words.len() {
        match words[i].as_str() {
            "-s" => {}
            "-X" => {
                i += 1;
                method = Some(words[i].clone());
            }
            "-H" => {
                i += 1;
                let (k, v) = words[i].split_once(':').expect("a header");
                b = b.header(k.trim(), v.trim());
            }
            "-d" => {
                i += 1;
                data = Some(words[i].clone());
            }
            other if other.starts_with("http") => url = Some(other.to_string()),
            other => panic!("unexpected curl argument {other}"),
        }
        i += 1;
    }
    let method = method.unwrap_or_else(|| {
        if data.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    b.method(method.as_str())
        .uri(url.expect("a URL"))
        .body(body::full(data.unwrap_or_default()))
        .unwrap()
}

#[tokio::test]
async fn the_demo_commands_do_what_the_demo_says() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["demo", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("Ctrl-C stops"))
    {
        assert!(
            Instant::now() < deadline,
            "the demo did not print its script"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let script = lines.lock().unwrap().clone();
    let vars: HashMap<String, String> = script
        .iter()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(vars.len(), 3, "tokens for the admin, alice and bob");
    let dir = script
        .iter()
        .find_map(|l| l.trim().strip_prefix("config and keys "))
        .map(|d| std::path::PathBuf::from(d.trim()))
        .expect("the demo prints its directory");
    assert!(dir.join("credgate.toml").exists());

    let cl = client();
    let mut checked = 0;
    for (i, line) in script.iter().enumerate() {
        let Some(expect) = line.strip_prefix("# expect: ") else {
            continue;
        };
        let cmd = &script[i + 1];
        let mut want = expect.split_whitespace();
        let status: u16 = want.next().unwrap().parse().unwrap();
        let code = want.next();
        let got = send(&cl, curl_request(&shell_words(cmd, &vars))).await;
        assert_eq!(
            got.status.as_u16(),
            status,
            "{cmd}: {:?}",
            String::from_utf8_lossy(&got.body)
        );
        if let Some(code) = code {
            assert_eq!(got.code(), code, "{cmd}");
        }
        if cmd.contains("$BOB") && cmd.ends_with("/sdk/me") {
            let text = String::from_utf8_lossy(&got.body);
            assert!(
                text.contains("b0b00000-5a1e-4000-8000-000000000001"),
                "bob sees his account"
            );
            assert!(
                !text.contains("a11ce000"),
                "bob does not see alice's accounts"
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "the demo prints its commands ({checked})");

    // Ctrl-C stops everything and removes the keys.
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert!(!dir.exists(), "the demo's keys are deleted on exit");
}
