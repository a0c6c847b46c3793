//! Token administration, for the admin API and `convmsg token list|revoke`: a tenant's
//! admin lists its tokens and revokes one. Revocation is marked in the store (so a
//! config file still listing the token cannot grant it again) and the token leaves this
//! replica's authenticator at once; other replicas drop it at their next reload
//! (`auth.token_reload_interval_ms`). Nothing here sees another tenant's tokens: an
//! unknown hash and another tenant's are the same NOT_FOUND.

use crate::domain::principal::{Principal, Scope};
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::service::Service;
use crate::service::auth::Authenticator;
use crate::store::TokenRecord;

/// The tenant's tokens, oldest first, revoked and expired ones included.
pub async fn list(service: &Service, principal: &Principal) -> Result<Vec<TokenRecord>, AppError> {
    principal.require(Scope::Admin)?;
    Ok(service.store().list_tokens(&principal.tenant).await?)
}

/// Revokes the tenant's token whose SHA-256 is `raw`.
pub async fn revoke(
    service: &Service,
    auth: &Authenticator,
    principal: &Principal,
    raw: &str,
) -> Result<TokenRecord, AppError> {
    principal.require(Scope::Admin)?;
    let sha256 = parse_sha256(raw)?;
    let now = service.clock().now_ms();
    let record = service
        .store()
        .revoke_token(&principal.tenant, &sha256, now)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no token with SHA-256 {sha256}")))?;
    auth.forget(&sha256);
    tracing::info!(sha256 = %sha256, label = %record.label, "token revoked");
    Ok(record)
}

/// 64 hex characters, as `convmsg token new` prints them; any case.
fn parse_sha256(raw: &str) -> Result<String, AppError> {
    let hash = raw.trim().to_ascii_lowercase();
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(hash);
    }
    Err(AppError::invalid(Violation::new(
        "sha256",
        ErrorKind::InvalidInput,
        "sha256 must be the token's SHA-256: 64 hex characters (what `convmsg token new` printed)",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_64_hex_characters_in_any_case() {
        let hash = crate::domain::principal::hash_token("x");
        assert_eq!(parse_sha256(&hash.to_ascii_uppercase()).unwrap(), hash);
        for bad in ["", "abc", "cm_token", &"g".repeat(64)] {
            assert!(parse_sha256(bad).is_err(), "{bad}");
        }
    }
}
