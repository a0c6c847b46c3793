//! The token table: bearer tokens → tenant + scopes. It lives in the store and is
//! mirrored here in memory, so the check on every call is a hash and a map lookup — no
//! database round trip. A token's expiry is checked on every call; a revoked one is
//! dropped from the mirror at once on the replica that revoked it, and from every other
//! at its next reload.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clock::{SharedClock, SystemClock};
use crate::domain::principal::{Principal, hash_token};
use crate::error::AppError;

/// One active token as the authenticator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal: Principal,
    /// When it stops working (ms since the epoch), checked on every call.
    pub expires_ms: Option<i64>,
}

/// The in-memory mirror of the token table.
#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 hex → grant. Replaced whole on reload; entries removed at once on revocation.
    tokens: Arc<RwLock<HashMap<String, Grant>>>,
    /// Expiry is checked against this on every call, not only at reload.
    clock: SharedClock,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.tokens.read().map(|t| t.len()).unwrap_or_default();
        f.debug_struct("Authenticator").field("tokens", &n).finish_non_exhaustive()
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(Arc::new(SystemClock))
    }
}

impl Authenticator {
    pub fn new(clock: SharedClock) -> Self {
        Authenticator { tokens: Arc::default(), clock }
    }

    pub fn replace(&self, tokens: HashMap<String, Grant>) {
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    /// Stops accepting one token at once (revocation on this replica; the others drop it
    /// at their next reload).
    pub fn forget(&self, sha256: &str) {
        self.tokens.write().unwrap_or_else(|p| p.into_inner()).remove(sha256);
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
        let grant = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
            .ok_or(AppError::Unauthenticated("Session expired or invalid"))?;
        if grant.expires_ms.is_some_and(|at| self.clock.now_ms() >= at) {
            return Err(AppError::Unauthenticated("Session expired or invalid"));
        }
        // The server span declares the field; elsewhere this is a no-op.
        tracing::Span::current().record("convmsg.tenant", grant.principal.tenant.as_str());
        Ok(grant.principal)
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
        auth.replace(HashMap::from([(hash_token(&token), Grant { principal: principal.clone(), expires_ms: None })]));
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).unwrap(), principal);
        assert!(auth.authenticate(Some("Bearer cm_wrong")).is_err());
        assert!(auth.authenticate(Some(&token)).is_err());
        assert!(auth.authenticate(None).is_err());
    }

    #[test]
    fn a_token_stops_working_when_it_expires_and_when_it_is_forgotten() {
        let clock = crate::clock::ManualClock::new(1_000);
        let auth = Authenticator::new(Arc::new(clock.clone()));
        let (soon, other) = (generate_token(), generate_token());
        let principal = Principal { tenant: "acme".into(), scopes: vec![Scope::Read] };
        auth.replace(HashMap::from([
            (hash_token(&soon), Grant { principal: principal.clone(), expires_ms: Some(2_000) }),
            (hash_token(&other), Grant { principal, expires_ms: None }),
        ]));
        assert!(auth.authenticate(Some(&format!("Bearer {soon}"))).is_ok());
        clock.advance_ms(1_000);
        assert!(auth.authenticate(Some(&format!("Bearer {soon}"))).is_err(), "expired at 2000");
        assert!(auth.authenticate(Some(&format!("Bearer {other}"))).is_ok());
        auth.forget(&hash_token(&other));
        assert!(auth.authenticate(Some(&format!("Bearer {other}"))).is_err(), "revoked here at once");
    }
}
