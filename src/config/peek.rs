//! Reading a config file without validating it, for the commands that
//! need one fact of it before (or without) everything else holds: the
//! files it names (`check-config --files`, which `deploy/systemd/install.sh`
//! reads before it installs them) and where its admin listener is
//! (`healthcheck --config`, which must not fail on an environment variable
//! or a key file that only the serving process reads). The text must still
//! parse as a config: a misspelt key is refused here too.
//!
//! It must not know anything of credgate outside `config` (`config`
//! imports nothing of credgate's: see `src/lib.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::common::ConfigError;
use super::raw::RawConfig;
use super::{toml_error, DEFAULT_ADMIN_LISTEN};

/// Every string value of a TOML document with its key path
/// (`auth.keys[1].pem_file`: arrays numbered from 1, as a person counts).
pub(super) fn strings<'a>(value: &'a toml::Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match value {
        toml::Value::String(s) => out.push((path.to_string(), s)),
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                strings(v, &p, out);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                strings(v, &format!("{path}[{}]", i + 1), out);
            }
        }
        _ => {}
    }
}

/// The file's text and its file form.
fn read(path: &Path) -> Result<(String, RawConfig), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
    })?;
    let raw = toml::from_str(&text).map_err(|e| toml_error(&text, &e))?;
    Ok((text, raw))
}

/// The files a config names, as written, with their keys
/// (`paragon.signing_key_file`, `auth.keys[1].pem_file`, `audit.file`):
/// every key ending in `_file`, and `audit.file`. The files need not exist.
pub fn named_files(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let (text, _) = read(path)?;
    let doc = toml::Value::Table(text.parse().map_err(|e| toml_error(&text, &e))?);
    let mut all = Vec::new();
    strings(&doc, "", &mut all);
    Ok(all
        .into_iter()
        .filter(|(k, _)| k.ends_with("_file") || k == "audit.file")
        // Claims merged into minted tokens, not files.
        .filter(|(k, _)| !k.starts_with("paragon.member_token_permissions."))
        .map(|(k, v)| (k, v.to_string()))
        .collect())
}

/// The address at which this machine reaches the config's admin listener:
/// `server.admin_listen` [default: 127.0.0.1:9901], loopback when it
/// listens on every address (`0.0.0.0`, `[::]`).
pub fn local_admin_addr(path: &Path) -> Result<SocketAddr, ConfigError> {
    let (_, raw) = read(path)?;
    let listen = raw.server.admin_listen.as_deref();
    let mut addr: SocketAddr = listen
        .unwrap_or(DEFAULT_ADMIN_LISTEN)
        .parse()
        .map_err(|_| ConfigError::new("server.admin_listen", "is not an IP address and port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as a config file in a directory of its own.
    fn written(text: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("credgate-peek-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every kind of file key is listed with its key path as written,
    /// whether or not the file exists; claims named `*_file` are not files.
    #[test]
    fn named_files_lists_every_file_key_as_written() {
        let p = written(
            "[server]\ntls = { cert_file = \"tls/c.pem\", key_file = \"/abs/k.pem\" }\n\
             [paragon]\nsigning_key_file = \"keys/s.pem\"\nca_file = \"ca.pem\"\n\
             member_token_permissions = { x_file = \"not-a-file\" }\n\
             [auth]\n[[auth.keys]]\nalgorithm = \"RS256\"\npem_file = \"idp.pem\"\n\
             [policy]\nacl_file = \"acl.toml\"\nrules_file = \"rules.toml\"\n\
             [audit]\nfile = \"/var/log/credgate/audit.jsonl\"\n\
             [cluster]\npostgres_url = \"postgres://db/x\"\nca_file = \"pg-ca.pem\"\n",
        );
        let mut got = named_files(&p).unwrap();
        got.sort();
        let want: Vec<(String, String)> = [
            ("audit.file", "/var/log/credgate/audit.jsonl"),
            ("auth.keys[1].pem_file", "idp.pem"),
            ("cluster.ca_file", "pg-ca.pem"),
            ("paragon.ca_file", "ca.pem"),
            ("paragon.signing_key_file", "keys/s.pem"),
            ("policy.acl_file", "acl.toml"),
            ("policy.rules_file", "rules.toml"),
            ("server.tls.cert_file", "tls/c.pem"),
            ("server.tls.key_file", "/abs/k.pem"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A misspelt key is refused, naming it.
    #[test]
    fn named_files_refuses_an_unknown_key() {
        let p = written("[paragon]\nsigning_key_fil = \"k.pem\"\n");
        let e = named_files(&p).unwrap_err();
        assert_eq!(e.key, "paragon.signing_key_fil");
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// The admin listener as this machine reaches it.
    #[test]
    fn local_admin_addr_is_loopback_for_every_address() {
        for (server, want) in [
            ("", "127.0.0.1:9901"),
            ("admin_listen = \"0.0.0.0:9911\"", "127.0.0.1:9911"),
            ("admin_listen = \"[::]:9912\"", "[::1]:9912"),
            ("admin_listen = \"10.1.2.3:9913\"", "10.1.2.3:9913"),
        ] {
            let p = written(&format!("[server]\n{server}\n"));
            assert_eq!(local_admin_addr(&p).unwrap().to_string(), want, "{server}");
            let _ = std::fs::remove_dir_all(p.parent().unwrap());
        }
    }
}
