//! The token table: bearer tokens → tenant + scopes. It lives in the store and is
//! mirrored here in memory, so the check on every call is a hash and a map lookup — no
//! database round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::principal::{Principal, hash_token};
use crate::error::AppError;

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
    use crate::domain::principal::{Scope, generate_token};

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
}
