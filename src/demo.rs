//! `credgate demo`: the Paragon emulator and the gateway on loopback, with
//! throwaway keys, and a script of `curl` commands that show allowed and
//! refused requests, over the REST proxy and over MCP. Everything lives in
//! a temporary directory removed on exit, an early one included (a port in
//! use); nothing leaves the machine.
//!
//! What `script` prints is a shell script a newcomer pastes as a whole:
//! prose is `#` comments, each command says what it shows and the status
//! it expects, and prints its response body and then that status on a line
//! of its own. credgate's warnings about the demo's own deliberate config
//! (it trusts the externalId labels of its emulated accounts, it has no
//! identity provider to name) come after the script, as comments saying
//! they are expected, instead of above it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::app::{self, Running};
use crate::config::Config;
use crate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB, DEMO_SLACK_ALICE_1};
use crate::emulator::{self, EmulatorConfig, EmulatorHandle, Fixtures};
use crate::keygen;

/// The demo's Paragon project id.
pub const DEMO_PROJECT: &str = "de300000-0000-4000-8000-000000000000";
/// How long the printed caller tokens stay valid.
const TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// The MCP revision the printed MCP session speaks.
const MCP_VERSION: &str = "2025-11-25";
/// What every printed `curl` adds: the body, then the status on a line of
/// its own, so consecutive answers do not run together.
const STATUS: &str = r"-w '\n%{http_code}\n'";

/// A running demo.
pub struct Demo {
    pub emulator: EmulatorHandle,
    pub gateway: Running,
    pub dir: PathBuf,
    pub admin_token: String,
    pub alice_token: String,
    pub bob_token: String,
    /// credgate's warnings about the demo's own config, which it sets on
    /// purpose: not logged at start, printed after the script instead.
    pub expected_warnings: Vec<String>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Removes the demo directory when dropped, unless disarmed: whatever way
/// `start` leaves early (an error, a panic, its future dropped), it leaves
/// no keys behind.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) -> PathBuf {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn write(dir: &Path, name: &str, content: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// The demo's config; every Paragon host is the emulator at `url`.
fn config_text(gateway_listen: SocketAddr, url: &str) -> String {
    format!(
        r#"# credgate demo configuration (generated; every Paragon host is the emulator)
[server]
listen = "{gateway_listen}"
admin_listen = "127.0.0.1:0"

[paragon]
project_id = "{DEMO_PROJECT}"
connect_url = "{url}"
workflows_url = "{url}"
proxy_url = "{url}"
actionkit_url = "{url}"
sync_url = "{url}"
agentos_url = "{url}"
signing_key_file = "paragon-signing.pem"

[auth]
algorithms = ["RS256"]
principal_claim = "principal"
admin_claim = "role"
admin_values = ["admin"]

[[auth.keys]]
algorithm = "RS256"
pem_file = "idp-public.pem"

[policy]
# In the demo a credential's externalId is the member who connected it.
owner_external_id = "{{principal}}"

[mcp]
# AI agents: MCP at /mcp, ActionKit's tools with each member's own accounts.
enabled = true
"#
    )
}

/// Splits `config`'s warnings: those the demo's config gets whatever
/// address the gateway listens on are about the demo's own deliberate
/// choices (returned, to print after the script); any other (a
/// non-loopback `--listen`) stays in `config` and is logged at start as
/// for any config.
fn take_expected_warnings(
    config: &mut Config,
    gateway_listen: SocketAddr,
    url: &str,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let baseline = if gateway_listen.ip().is_loopback() {
        config.warnings.clone()
    } else {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Config::from_toml(&config_text(loopback, url), dir, &crate::config::ProcessEnv)
            .map_err(|e| e.to_string())?
            .warnings
    };
    let (expected, other) = std::mem::take(&mut config.warnings)
        .into_iter()
        .partition(|w| baseline.contains(w));
    config.warnings = other;
    Ok(expected)
}

/// Starts the emulator and the gateway. `gateway_listen` may use port 0.
/// On an error nothing is left running and the demo directory is gone.
pub async fn start(gateway_listen: SocketAddr) -> Result<Demo, String> {
    let suffix: String = keygen::random_bytes::<6>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("credgate-demo-{suffix}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cleanup = RemoveOnDrop(Some(dir.clone()));
    let paragon = keygen::rsa()?;
    let idp = keygen::rsa()?;
    write(&dir, "paragon-signing.pem", &paragon.private_pem)?;
    write(&dir, "paragon-public.pem", &paragon.public_pem)?;
    write(&dir, "idp-private.pem", &idp.private_pem)?;
    write(&dir, "idp-public.pem", &idp.public_pem)?;

    // The caller tokens first: nothing may fail once the servers run.
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(idp.private_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let now = crate::clock::unix_now();
    let token = |principal: &str, admin: bool| -> Result<String, String> {
        let mut claims = json!({"sub": "acme", "principal": principal, "iat": now, "exp": now + TOKEN_LIFETIME_SECS});
        if admin {
            claims["role"] = json!("admin");
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| e.to_string())
    };
    let admin_token = token("carol-admin", true)?;
    let alice_token = token("alice", false)?;
    let bob_token = token("bob", false)?;

    let emulator = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("static address"),
        fixtures: Fixtures::demo(DEMO_PROJECT),
        public_key_pem: paragon.public_pem.clone().into_bytes(),
    })
    .await
    .map_err(|e| format!("the emulator did not start: {e}"))?;

    let url = emulator.url();
    let gateway = async {
        let text = config_text(gateway_listen, &url);
        write(&dir, "credgate.toml", &text)?;
        let mut config = Config::from_toml(&text, &dir, &crate::config::ProcessEnv)
            .map_err(|e| e.to_string())?;
        let expected = take_expected_warnings(&mut config, gateway_listen, &url, &dir)?;
        Ok::<_, String>((app::start(config).await?, expected))
    }
    .await;
    let (gateway, expected_warnings) = match gateway {
        Ok(g) => g,
        Err(e) => {
            emulator.shutdown().await;
            return Err(e);
        }
    };
    Ok(Demo {
        admin_token,
        alice_token,
        bob_token,
        emulator,
        gateway,
        dir: cleanup.disarm(),
        expected_warnings,
    })
}

/// One printed command: what it shows, the status it answers (and the
/// code its body names, if any), and the command line.
struct Step {
    what: String,
    expect: &'static str,
    cmd: String,
}

impl Demo {
    /// The text `credgate demo` prints: a shell script whose prose is `#`
    /// comments, the tokens as `export`s, and commands each preceded by
    /// `# N. <what it shows>` and `# expect: <status> [code]`.
    pub fn script(&self) -> String {
        let gw = format!("http://{}", self.gateway.addr);
        let admin = format!("http://{}", self.gateway.admin_addr);
        let mut s = format!(
            "# credgate demo: the gateway in front of an emulated Paragon, on loopback only.\n\
             #\n\
             #   gateway          {gw}\n\
             #   dashboard        {admin}/         (open it in a browser: recent refusals, traffic)\n\
             #   metrics          {admin}/metrics  (Prometheus; also /healthz, /readyz)\n\
             #   Paragon (emu)    {emu}\n\
             #   config and keys  {dir}\n\
             #\n\
             # The Connected User \"acme\" is one organisation. Its members connected their own accounts:\n\
             #   salesforce  {DEMO_SALESFORCE_ALICE}  alice\n\
             #   salesforce  {DEMO_SALESFORCE_BOB}  bob\n\
             #   slack       {DEMO_SLACK_ALICE_1}  alice (and a second slack account of alice's)\n\
             #   slack, googledrive: more of alice's and bob's accounts (see GET /sdk/me below)\n\
             #\n\
             # Paste everything below into another terminal (bash; in zsh run `setopt interactive_comments`\n\
             # first), as a whole or command by command. Each command prints the response body, then\n\
             # the HTTP status on a line of its own; the comment above it says which status to expect.\n\
             # This terminal shows the audit record of each decision.\n\
             #\n\
             # Caller tokens from the demo identity provider (RS256, valid 24 hours):\n\
             export ADMIN={admin_token}\n\
             export ALICE={alice}\n\
             export BOB={bob}\n\n",
            emu = self.emulator.url(),
            dir = self.dir.display(),
            admin_token = self.admin_token,
            alice = self.alice_token,
            bob = self.bob_token,
        );
        for (i, step) in self.steps().iter().enumerate() {
            s.push_str(&format!(
                "# {}. {}\n# expect: {}\n{}\n\n",
                i + 1,
                step.what,
                step.expect,
                step.cmd
            ));
        }
        s.push_str(&format!(
            "# An MCP client (Streamable HTTP) acting for alice: its server entry. It lists the tools of\n\
             # alice's integrations with her own accounts in each tool's `credential` argument:\n\
             cat <<'EOF'\n\
             {{\"mcpServers\": {{\"credgate-demo\": {{\"type\": \"http\", \"url\": \"{gw}/mcp\", \"headers\": {{\"Authorization\": \"Bearer {alice}\"}}}}}}}}\n\
             EOF\n\n",
            alice = self.alice_token,
        ));
        if !self.expected_warnings.is_empty() {
            s.push_str(
                "# Expected for the demo: credgate warned about these choices of the demo's own config\n\
                 # (its emulated accounts' externalId labels name their members; it has no identity\n\
                 # provider to point MCP clients at). Weigh them for your own config:\n",
            );
            for w in &self.expected_warnings {
                s.push_str(&format!("#   - {w}\n"));
            }
            s.push('\n');
        }
        s.push_str(
            "# Every response carries an X-Request-Id; the audit log (credgate::audit) records each decision.\n\
             # Ctrl-C stops the demo and deletes its keys.\n",
        );
        s
    }

    /// The printed commands, in order. The MCP ones share one session:
    /// step 7 keeps its `Mcp-Session-Id` in `$SID` for the next ones.
    fn steps(&self) -> Vec<Step> {
        let gw = format!("http://{}", self.gateway.addr);
        let admin = format!("http://{}", self.gateway.admin_addr);
        let p = DEMO_PROJECT;
        let sf = format!("{gw}/projects/{p}/sdk/proxy/salesforce/services/data/v59.0/query");
        let slack = format!("{gw}/projects/{p}/sdk/proxy/slack/chat.postMessage");
        let post_json = "-X POST -H \"Content-Type: application/json\"";
        let mcp_json = "-X POST -H \"Authorization: Bearer $ALICE\" -H \"Content-Type: application/json\" -H \"Accept: application/json, text/event-stream\"";
        let in_session =
            format!("-H \"Mcp-Session-Id: $SID\" -H \"MCP-Protocol-Version: {MCP_VERSION}\"");
        let step = |what: &str, expect: &'static str, cmd: String| Step {
            what: what.to_string(),
            expect,
            cmd,
        };
        vec![
            step(
                "alice uses her own Salesforce account: allowed",
                "200",
                format!("curl -s {STATUS} -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\" {sf}"),
            ),
            step(
                "alice names bob's Salesforce account: refused before it reaches Paragon",
                "403 credential_forbidden",
                format!("curl -s {STATUS} -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_BOB}\" {sf}"),
            ),
            step(
                "alice has two Slack accounts and names none: she must choose",
                "400 credential_required",
                format!("curl -s {STATUS} {post_json} -H \"Authorization: Bearer $ALICE\" -d '{{\"channel\":\"#general\",\"text\":\"hi\"}}' {slack}"),
            ),
            step(
                "alice picks one of her Slack accounts: allowed",
                "200",
                format!("curl -s {STATUS} {post_json} -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SLACK_ALICE_1}\" -d '{{\"channel\":\"#general\",\"text\":\"hi\"}}' {slack}"),
            ),
            step(
                "bob lists the organisation's accounts: he sees only his own",
                "200",
                format!("curl -s {STATUS} -H \"Authorization: Bearer $BOB\" {gw}/projects/{p}/sdk/me"),
            ),
            step(
                "the admin sees every account and may use any, bob's included",
                "200",
                format!("curl -s {STATUS} -H \"Authorization: Bearer $ADMIN\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_BOB}\" {sf}"),
            ),
            step(
                "alice's AI agent opens an MCP session: the answer's headers are shown, Mcp-Session-Id\n\
                 #    among them, which names the session; $SID keeps it for the next commands",
                "200",
                format!("R=$(curl -s -D - {STATUS} {mcp_json} -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"{MCP_VERSION}\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"0\"}}}}}}' {gw}/mcp); printf '%s\\n' \"$R\"; SID=$(printf '%s\\n' \"$R\" | tr -d '\\r' | awk 'tolower($1) == \"mcp-session-id:\" {{print $2}}')"),
            ),
            step(
                "the agent says it is ready (a notification: accepted, no body)",
                "202",
                format!("curl -s {STATUS} {mcp_json} {in_session} -d '{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}' {gw}/mcp"),
            ),
            step(
                "the agent lists its tools: each tool's `credential` argument offers only alice's accounts",
                "200",
                format!("curl -s {STATUS} {mcp_json} {in_session} -d '{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}}' {gw}/mcp"),
            ),
            step(
                "the agent searches Salesforce with alice's account: allowed",
                "200",
                format!("curl -s {STATUS} {mcp_json} {in_session} -d '{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{{\"name\":\"SALESFORCE_SEARCH_RECORDS\",\"arguments\":{{\"credential\":\"{DEMO_SALESFORCE_ALICE}\",\"input\":\"Acme\"}}}}}}' {gw}/mcp"),
            ),
            step(
                "the agent tries bob's account: refused, as a tool error (\"isError\":true) naming\n\
                 #    credential_forbidden in a JSON-RPC answer, so the HTTP status is still 200",
                "200 credential_forbidden",
                format!("curl -s {STATUS} {mcp_json} {in_session} -d '{{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{{\"name\":\"SALESFORCE_SEARCH_RECORDS\",\"arguments\":{{\"credential\":\"{DEMO_SALESFORCE_BOB}\",\"input\":\"Acme\"}}}}}}' {gw}/mcp"),
            ),
            step(
                "the agent ends its session (no body)",
                "204",
                format!("curl -s {STATUS} -X DELETE -H \"Authorization: Bearer $ALICE\" {in_session} {gw}/mcp"),
            ),
            step(
                "what the gateway counted (the admin listener's /metrics): requests by product,\n\
                 #    decision and status",
                "200",
                format!("curl -s {STATUS} {admin}/metrics | grep -E '^credgate_requests_total|^[0-9]{{3}}$'"),
            ),
        ]
    }

    /// Stops both servers and removes the demo directory.
    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.emulator.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `--listen` off loopback still gets its exposure warning logged at
    /// start, as any config would: only the warnings about the demo's own
    /// choices wait for the end of the script.
    #[test]
    fn only_the_demos_own_warnings_wait_for_the_script() {
        let suffix: String = keygen::random_bytes::<6>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = std::env::temp_dir().join(format!("credgate-demo-unit-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = RemoveOnDrop(Some(dir.clone()));
        write(
            &dir,
            "paragon-signing.pem",
            &keygen::rsa().unwrap().private_pem,
        )
        .unwrap();
        write(&dir, "idp-public.pem", &keygen::rsa().unwrap().public_pem).unwrap();
        let url = "http://127.0.0.1:9";
        // Validated only, never bound.
        for (listen, logged) in [("127.0.0.1:8080", 0), ("0.0.0.0:8080", 1)] {
            let listen: SocketAddr = listen.parse().unwrap();
            let mut config =
                Config::from_toml(&config_text(listen, url), &dir, &crate::config::ProcessEnv)
                    .unwrap();
            let expected = take_expected_warnings(&mut config, listen, url, &dir).unwrap();
            assert!(
                expected.iter().any(|w| w.contains("owner_external_id")),
                "{expected:?}"
            );
            assert!(!expected.iter().any(|w| w.contains("loopback")));
            assert_eq!(config.warnings.len(), logged, "{:?}", config.warnings);
            assert!(config
                .warnings
                .iter()
                .all(|w| w.contains("is not a loopback address")));
        }
    }
}
