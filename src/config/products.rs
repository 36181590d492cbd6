//! The vocabulary config keys name: Paragon's products
//! (`policy.member_products`) and hosts (`paragon.*_url`). Plain data,
//! here because config validates against it; the route table
//! (`paragon::routes`) maps requests onto it.

use std::fmt;
use std::str::FromStr;

/// The Paragon products of contract §3, as used in `policy.member_products`,
/// metrics and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Product {
    Proxy,
    Workflow,
    AppEvent,
    User,
    Catalog,
    Uninstall,
    Credentials,
    WorkflowSettings,
    ActionKit,
    Sync,
    AgentOs,
    /// `/mcp`: the agents' front (contract §12).
    Mcp,
    /// Connecting accounts from the Connect SDK (contract §13).
    Install,
}

impl Product {
    pub const ALL: [Product; 13] = [
        Product::Proxy,
        Product::Workflow,
        Product::AppEvent,
        Product::User,
        Product::Catalog,
        Product::Uninstall,
        Product::Credentials,
        Product::WorkflowSettings,
        Product::ActionKit,
        Product::Sync,
        Product::AgentOs,
        Product::Mcp,
        Product::Install,
    ];

    /// Members' products when `policy.member_products` is not set: every
    /// product but Agent OS, because Paragon does not document whether Agent
    /// OS honours the permissions claim of a narrowed token.
    pub fn member_default(self) -> bool {
        self != Product::AgentOs
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Product::Proxy => "proxy",
            Product::Workflow => "workflow",
            Product::AppEvent => "app_event",
            Product::User => "user",
            Product::Catalog => "catalog",
            Product::Uninstall => "uninstall",
            Product::Credentials => "credentials",
            Product::WorkflowSettings => "workflow_settings",
            Product::ActionKit => "actionkit",
            Product::Sync => "sync",
            Product::AgentOs => "agentos",
            Product::Mcp => "mcp",
            Product::Install => "install",
        }
    }

    /// Routes on Paragon's Connect API host (contract §3: where a member's
    /// `includeAccountAuth` is refused). The install routes (§13) are on
    /// that host too, and an account's secrets are no less the member's
    /// there: credgate's reading counts them, though §3 names five.
    pub fn is_connect(self) -> bool {
        matches!(
            self,
            Product::User
                | Product::Credentials
                | Product::Uninstall
                | Product::Catalog
                | Product::WorkflowSettings
                | Product::Install
        )
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Product {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Product::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}

/// Which of Paragon's six hosts a route goes to (contract §10 `paragon.*_url`).
/// The order is that of `ParagonConfig::upstream_bases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    Connect,
    Workflows,
    Proxy,
    ActionKit,
    Sync,
    AgentOs,
}

impl Upstream {
    pub const ALL: [Upstream; 6] = [
        Upstream::Connect,
        Upstream::Workflows,
        Upstream::Proxy,
        Upstream::ActionKit,
        Upstream::Sync,
        Upstream::AgentOs,
    ];

    pub fn config_key(self) -> &'static str {
        match self {
            Upstream::Connect => "connect_url",
            Upstream::Workflows => "workflows_url",
            Upstream::Proxy => "proxy_url",
            Upstream::ActionKit => "actionkit_url",
            Upstream::Sync => "sync_url",
            Upstream::AgentOs => "agentos_url",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
