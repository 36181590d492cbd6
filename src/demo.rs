//! `credgate demo`: the Paragon emulator and the gateway on loopback, with
//! throwaway keys, and a script of `curl` commands that show an allowed and
//! a refused request. Everything lives in a temporary directory removed on
//! exit; nothing leaves the machine.

use std::net::SocketAddr;
use std::path::PathBuf;

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

/// A running demo.
pub struct Demo {
    pub emulator: EmulatorHandle,
    pub gateway: Running,
    pub dir: PathBuf,
    pub admin_token: String,
    pub alice_token: String,
    pub bob_token: String,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn write(dir: &std::path::Path, name: &str, content: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Starts the emulator and the gateway. `gateway_listen` may use port 0.
pub async fn start(gateway_listen: SocketAddr) -> Result<Demo, String> {
    let suffix: String = keygen::random_bytes::<6>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("credgate-demo-{suffix}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let paragon = keygen::rsa()?;
    let idp = keygen::rsa()?;
    write(&dir, "paragon-signing.pem", &paragon.private_pem)?;
    write(&dir, "paragon-public.pem", &paragon.public_pem)?;
    write(&dir, "idp-private.pem", &idp.private_pem)?;
    write(&dir, "idp-public.pem", &idp.public_pem)?;

    let emulator = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("static address"),
        fixtures: Fixtures::demo(DEMO_PROJECT),
        public_key_pem: paragon.public_pem.clone().into_bytes(),
    })
    .await
    .map_err(|e| format!("the emulator did not start: {e}"))?;

    let url = emulator.url();
    let config_text = format!(
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
    );
    write(&dir, "credgate.toml", &config_text)?;
    let config = Config::from_toml(&config_text, &dir, &crate::config::ProcessEnv)
        .map_err(|e| e.to_string())?;
    let gateway = app::start(config).await?;

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
    Ok(Demo {
        admin_token: token("carol-admin", true)?,
        alice_token: token("alice", false)?,
        bob_token: token("bob", false)?,
        emulator,
        gateway,
        dir,
    })
}

impl Demo {
    /// The text `credgate demo` prints: where things run, the tokens, and
    /// commands each preceded by `# expect: <status> [code]`.
    pub fn script(&self) -> String {
        let gw = format!("http://{}", self.gateway.addr);
        let p = DEMO_PROJECT;
        let mut s = String::new();
        s.push_str(&format!(
            "credgate demo: the gateway in front of an emulated Paragon, on loopback only.\n\n\
             \x20 gateway         {gw}\n\
             \x20 admin listener  http://{admin}  (/metrics, /readyz)\n\
             \x20 Paragon (emu)   {emu}\n\
             \x20 config and keys {dir}\n\n\
             The Connected User \"acme\" is one organisation. Its members connected their own accounts:\n\
             \x20 salesforce  {DEMO_SALESFORCE_ALICE}  alice\n\
             \x20 salesforce  {DEMO_SALESFORCE_BOB}  bob\n\
             \x20 slack       {DEMO_SLACK_ALICE_1}  alice (and a second slack account of alice's)\n\
             \x20 slack, googledrive: more of alice's and bob's accounts (see GET /sdk/me below)\n\n\
             Caller tokens from the demo identity provider (RS256, valid 24 hours). Paste these first:\n\n\
             export ADMIN={admin_token}\n\
             export ALICE={alice}\n\
             export BOB={bob}\n\n",
            admin = self.gateway.admin_addr,
            emu = self.emulator.url(),
            dir = self.dir.display(),
            admin_token = self.admin_token,
            alice = self.alice_token,
            bob = self.bob_token,
        ));
        let cmds: [(&str, &str, String); 7] = [
            (
                "alice uses her own Salesforce account: allowed",
                "200",
                format!(
                    "curl -s -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\" {gw}/projects/{p}/sdk/proxy/salesforce/services/data/v59.0/query"
                ),
            ),
            (
                "alice names bob's Salesforce account: refused before it reaches Paragon",
                "403 credential_forbidden",
                format!(
                    "curl -s -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_BOB}\" {gw}/projects/{p}/sdk/proxy/salesforce/services/data/v59.0/query"
                ),
            ),
            (
                "alice has two Slack accounts and names none: she must choose",
                "400 credential_required",
                format!(
                    "curl -s -X POST -H \"Authorization: Bearer $ALICE\" -H \"Content-Type: application/json\" -d '{{\"channel\":\"#general\",\"text\":\"hi\"}}' {gw}/projects/{p}/sdk/proxy/slack/chat.postMessage"
                ),
            ),
            (
                "alice picks one of her Slack accounts: allowed",
                "200",
                format!(
                    "curl -s -X POST -H \"Authorization: Bearer $ALICE\" -H \"X-Paragon-Credential: {DEMO_SLACK_ALICE_1}\" -H \"Content-Type: application/json\" -d '{{\"channel\":\"#general\",\"text\":\"hi\"}}' {gw}/projects/{p}/sdk/proxy/slack/chat.postMessage"
                ),
            ),
            (
                "bob lists the organisation's accounts: he sees only his own",
                "200",
                format!("curl -s -H \"Authorization: Bearer $BOB\" {gw}/projects/{p}/sdk/me"),
            ),
            (
                "the admin sees every account and may use any",
                "200",
                format!(
                    "curl -s -H \"Authorization: Bearer $ADMIN\" -H \"X-Paragon-Credential: {DEMO_SALESFORCE_BOB}\" {gw}/projects/{p}/sdk/proxy/salesforce/services/data/v59.0/query"
                ),
            ),
            (
                "alice's AI agent opens an MCP session (the Mcp-Session-Id header names it)",
                "200",
                format!(
                    "curl -s -X POST -H \"Authorization: Bearer $ALICE\" -H \"Content-Type: application/json\" -H \"Accept: application/json, text/event-stream\" -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"0\"}}}}}}' {gw}/mcp"
                ),
            ),
        ];
        for (i, (what, expect, cmd)) in cmds.iter().enumerate() {
            s.push_str(&format!(
                "# {}. {what}\n# expect: {expect}\n{cmd}\n\n",
                i + 1
            ));
        }
        s.push_str(&format!(
            "An MCP client (Streamable HTTP) acting for alice: its server entry. It lists the tools of\n\
             alice's integrations with her own accounts in each tool's `credential` argument:\n\n\
             {{\"mcpServers\": {{\"credgate-demo\": {{\"type\": \"http\", \"url\": \"{gw}/mcp\", \"headers\": {{\"Authorization\": \"Bearer {alice}\"}}}}}}}}\n\n",
            alice = self.alice_token,
        ));
        s.push_str("Every response carries an X-Request-Id; the audit log (credgate::audit) records each decision.\nCtrl-C stops the demo and deletes its keys.\n");
        s
    }

    /// Stops both servers and removes the demo directory.
    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.emulator.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
