//! The validated config turned back into the file's shape, every default
//! filled in, for `check-config`. Secrets never appear: HMAC keys are shown
//! by the env var that holds them, key files by path, and a database
//! password as `***`.

use super::duration::format as d;
use super::raw::*;
use super::{AdminDefault, Config, Enforce, KeyMaterial};

pub(super) fn to_raw(c: &Config) -> RawConfig {
    let s = &c.server;
    let p = &c.paragon;
    let a = &c.auth;
    let pol = &c.policy;
    let path = |p: &std::path::Path| p.display().to_string();
    RawConfig {
        server: RawServer {
            listen: Some(s.listen.to_string()),
            admin_listen: Some(s.admin_listen.to_string()),
            admin_hosts: Some(s.admin_hosts.iter().map(ToString::to_string).collect()),
            max_body_bytes: Some(s.max_body_bytes),
            upstream_timeout: Some(d(s.upstream_timeout)),
            upstream_connect_timeout: Some(d(s.upstream_connect_timeout)),
            upstream_idle_timeout: Some(d(s.upstream_idle_timeout)),
            upstream_max_idle_per_host: Some(s.upstream_max_idle_per_host),
            shutdown_grace: Some(d(s.shutdown_grace)),
            worker_threads: Some(s.worker_threads),
            scheduler: Some(s.scheduler.as_str().to_string()),
            trusted_proxies: Some(s.trusted_proxies.iter().map(ToString::to_string).collect()),
            max_connections: Some(s.max_connections),
            max_header_bytes: Some(s.max_header_bytes),
            max_headers: Some(s.max_headers),
            max_requests_per_connection: Some(s.max_requests_per_connection),
            max_concurrent_streams: Some(s.max_concurrent_streams),
            header_read_timeout: Some(d(s.header_read_timeout)),
            tls_handshake_timeout: Some(d(s.tls_handshake_timeout)),
            tls: s.tls.as_ref().map(|t| RawTls {
                cert_file: Some(path(&t.cert_file)),
                key_file: Some(path(&t.key_file)),
            }),
        },
        paragon: Some(RawParagon {
            project_id: Some(p.project_id.clone()),
            connect_url: Some(p.connect_url.text.clone()),
            workflows_url: Some(p.workflows_url.text.clone()),
            proxy_url: Some(p.proxy_url.text.clone()),
            actionkit_url: Some(p.actionkit_url.text.clone()),
            sync_url: Some(p.sync_url.text.clone()),
            agentos_url: Some(p.agentos_url.text.clone()),
            member_token_permissions: Some(
                serde_json::from_value(serde_json::Value::Object(
                    p.member_token_permissions.clone(),
                ))
                .unwrap_or_default(),
            ),
            signing_key_file: p.signing_key.as_ref().map(|k| path(&k.path)),
            public_key_file: p.public_key.as_ref().map(|k| path(&k.path)),
            token_ttl: Some(d(p.token_ttl)),
            ca_file: p.ca_file.as_ref().map(|k| path(&k.path)),
            audience: Some(p.audience.clone()),
        }),
        auth: RawAuth {
            mode: Some(a.mode.as_str().to_string()),
            issuer: a.issuer.clone(),
            audience: a.audience.clone().map(OneOrMany::Many),
            algorithms: Some(a.algorithms.iter().map(|x| format!("{x:?}")).collect()),
            jwks_url: a.jwks_url.as_ref().map(ToString::to_string),
            jwks_refresh: Some(d(a.jwks_refresh)),
            jwks_min_refetch: Some(d(a.jwks_min_refetch)),
            jwks_timeout: Some(d(a.jwks_timeout)),
            leeway: Some(d(a.leeway)),
            user_claim: Some(a.user_claim.clone()),
            principal_claim: Some(a.principal_claim.clone()),
            admin_claim: a.admin_claim.clone(),
            admin_values: Some(a.admin_values.clone()),
            token_cache_size: Some(a.token_cache_size),
            keys: a
                .keys
                .iter()
                .map(|k| RawKey {
                    algorithm: Some(format!("{:?}", k.algorithm)),
                    secret_env: match &k.material {
                        KeyMaterial::Secret { env, .. } => Some(env.clone()),
                        KeyMaterial::Pem(_) => None,
                    },
                    pem_file: match &k.material {
                        KeyMaterial::Pem(p) => Some(path(&p.path)),
                        KeyMaterial::Secret { .. } => None,
                    },
                    kid: k.kid.clone(),
                })
                .collect(),
        },
        policy: RawPolicy {
            owner_external_id: pol.owner_external_id.clone(),
            credentials_claim: pol.credentials_claim.clone(),
            acl_file: pol.acl_file.as_ref().map(|p| path(p)),
            rules_file: pol.rules_file.as_ref().map(|p| path(p)),
            admin_default: Some(
                match pol.admin_default {
                    AdminDefault::Passthrough => "passthrough",
                    AdminDefault::Resolve => "resolve",
                }
                .to_string(),
            ),
            member_products: Some(
                pol.member_products
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
            ),
            allow_account_auth: Some(pol.allow_account_auth),
            proxy_url_hosts: Some(pol.proxy_url_hosts.clone()),
            webhook_hosts: Some(pol.webhook_hosts.clone()),
            member_paragon_headers: Some(pol.member_paragon_headers.clone()),
            enforce: Some(
                match pol.enforce {
                    Enforce::Enforce => "enforce",
                    Enforce::Shadow => "shadow",
                }
                .to_string(),
            ),
            shadow_products: (pol.enforce == Enforce::Enforce)
                .then(|| pol.shadow.iter().map(|p| p.as_str().to_string()).collect()),
            member_metadata: Some(pol.member_metadata.as_str().to_string()),
        },
        cache: RawCache {
            credentials_ttl: Some(d(c.cache.credentials_ttl)),
            max_users: Some(c.cache.max_users),
            refresh_cooldown: Some(d(c.cache.refresh_cooldown)),
            stale_if_error: Some(d(c.cache.stale_if_error)),
            max_concurrent_loads: Some(c.cache.max_concurrent_loads),
        },
        audit: RawAudit {
            enabled: Some(c.audit.enabled),
            file: c.audit.file.as_ref().map(|p| path(p)),
        },
        telemetry: RawTelemetry {
            otlp_endpoint: c.telemetry.otlp_endpoint.as_ref().map(ToString::to_string),
            service_name: Some(c.telemetry.service_name.clone()),
            sample_ratio: Some(c.telemetry.sample_ratio),
            trust_incoming_trace: Some(c.telemetry.trust_incoming_trace),
            max_queued_spans: Some(c.telemetry.max_queued_spans),
        },
        mcp: RawMcp {
            enabled: Some(c.mcp.enabled),
            proxy_tool: Some(c.mcp.proxy_tool),
            session_idle: Some(d(c.mcp.session_idle)),
            max_sessions: Some(c.mcp.max_sessions),
            max_sessions_per_principal: Some(c.mcp.max_sessions_per_principal),
        },
        cors: RawCors {
            allowed_origins: Some(c.cors.allowed_origins.clone()),
            allowed_headers: Some(c.cors.allowed_headers.clone()),
            max_age: Some(d(c.cors.max_age)),
        },
        // The tokens are named by their env vars only.
        authzen: RawAuthzen {
            serve: Some(c.authzen.serve),
            token_env: Some(c.authzen.token_env.clone()),
            pdp_url: c.authzen.pdp_url.as_ref().map(ToString::to_string),
            pdp_token_env: c.authzen.pdp_token_env.clone(),
            pdp_timeout: Some(d(c.authzen.pdp_timeout)),
            pdp_cache_ttl: Some(d(c.authzen.pdp_cache_ttl)),
            listen: c.authzen.listen.map(|a| a.to_string()),
        },
        limits: RawLimits {
            principal_rps: c.limits.principal.map(|r| r.rps),
            principal_burst: c.limits.principal.map(|r| r.burst),
            user_rps: c.limits.user.map(|r| r.rps),
            user_burst: c.limits.user.map(|r| r.burst),
        },
        cluster: c.cluster.as_ref().map(|cl| RawCluster {
            postgres_url: if cl.postgres_url_env.is_some() {
                None
            } else {
                Some(super::redact_url_password(&cl.postgres_url))
            },
            postgres_url_env: cl.postgres_url_env.clone(),
            ca_file: cl.ca_file.as_ref().map(|k| path(&k.path)),
            poll_interval: Some(d(cl.poll_interval)),
            event_retention: Some(d(cl.event_retention)),
            degraded_ttl: Some(d(cl.degraded_ttl)),
            strict: Some(cl.strict),
        }),
    }
}
