//! Bearer tokens → tenant + scopes. Tokens are random (`cm_` + 43 base64url chars);
//! only their SHA-256 is stored. The table lives in the store and is mirrored in memory
//! so the check on every call is a hash and a map lookup — no database round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Send,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Send, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s.trim())
    }
}

/// Parses `send,read` (or a list of names) into scopes, naming the first unknown one.
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in names.into_iter().flat_map(|n| n.split(',')).filter(|n| !n.trim().is_empty()) {
        let scope =
            Scope::parse(name).ok_or_else(|| format!("unknown scope {name:?} (expected send, read or admin)"))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

pub fn scopes_to_string(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// Who is calling: the tenant every record belongs to, and what the token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.scopes.contains(&scope) { Ok(()) } else { Err(AppError::PermissionDenied(scope.as_str())) }
    }
}

/// A new random token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("cm_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Lowercase hex SHA-256 of a token: what config files and the store hold.
pub fn hash_token(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// The in-memory mirror of the token table.
#[derive(Debug, Default, Clone)]
pub struct Authenticator {
    /// SHA-256 hex → principal. Replaced whole on reload.
    tokens: Arc<RwLock<HashMap<String, Principal>>>,
}

impl Authenticator {
    pub fn replace(&self, tokens: HashMap<String, Principal>) {
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    /// Checks an `authorization` header value (`Bearer <token>`).
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AppError> {
        let header = header.ok_or(AppError::Unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthenticated("authorization must be Bearer <token>"))?;
        let hash = hash_token(token);
        let principal = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
            .ok_or(AppError::Unauthenticated("Session expired or invalid"))?;
        // The server span (telemetry::server) declares the field; elsewhere this is a no-op.
        tracing::Span::current().record("convmsg.tenant", principal.tenant.as_str());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_by_its_hash_and_carries_its_tenant_and_scopes() {
        let auth = Authenticator::default();
        let token = generate_token();
        let principal = Principal { tenant: "acme".into(), scopes: vec![Scope::Read] };
        auth.replace(HashMap::from([(hash_token(&token), principal.clone())]));
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).unwrap(), principal);
        assert!(auth.authenticate(Some("Bearer cm_wrong")).is_err());
        assert!(auth.authenticate(Some(&token)).is_err());
        assert!(auth.authenticate(None).is_err());
    }

    #[test]
    fn a_missing_scope_is_permission_denied() {
        let p = Principal { tenant: "t".into(), scopes: vec![Scope::Read] };
        assert!(p.require(Scope::Read).is_ok());
        assert!(matches!(p.require(Scope::Send), Err(AppError::PermissionDenied("send"))));
    }

    #[test]
    fn tokens_are_long_random_and_hash_to_64_hex_characters() {
        let a = generate_token();
        assert!(a.starts_with("cm_") && a.len() == 46, "{a}");
        assert_ne!(a, generate_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn scopes_parse_from_comma_lists_and_reject_unknown_names() {
        assert_eq!(parse_scopes(["send,read"]).unwrap(), vec![Scope::Send, Scope::Read]);
        assert!(parse_scopes(["write"]).unwrap_err().contains("write"));
    }
}
