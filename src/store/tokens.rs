//! Tokens as the store keeps them (only SHA-256 hashes, never a token): the record and
//! where a grant came from (the SQL is `sql::tokens`). A revoked token keeps its row,
//! marked, so that a config file still listing it cannot grant it again; rows the config
//! no longer grants are deleted at start (`server::provision::tokens`).

use crate::domain::principal::Principal;

/// Where a token was granted; a start replaces each source's set with the config's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `[[tenants.tokens]]` in the config file.
    Config,
    /// `bootstrap_token` / `CONVMSG_BOOTSTRAP_TOKEN`.
    Bootstrap,
    /// Generated at a start that found no token, printed once.
    Generated,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Config => "config",
            TokenSource::Bootstrap => "bootstrap",
            TokenSource::Generated => "generated",
        }
    }

    pub fn parse(s: &str) -> Option<TokenSource> {
        [TokenSource::Config, TokenSource::Bootstrap, TokenSource::Generated].into_iter().find(|t| t.as_str() == s)
    }
}

/// A token to grant.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub sha256: String,
    pub principal: Principal,
    pub label: String,
    pub source: TokenSource,
    /// Stops working at this time (ms since the epoch); `None` = never.
    pub expires_ms: Option<i64>,
}

/// A stored token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub sha256: String,
    pub principal: Principal,
    pub label: String,
    pub source: TokenSource,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// An active token: what the authenticator needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveToken {
    pub sha256: String,
    pub principal: Principal,
    pub expires_ms: Option<i64>,
}
