//! Who is calling: a tenant and the scopes its token grants, and the tokens themselves —
//! random (`cm_` + 43 base64url chars), known to the server only by their SHA-256. Pure:
//! the token table and the check on every call live in `service::auth`.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

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
    /// `Err` naming the scope when the token does not grant it.
    pub fn require(&self, scope: Scope) -> Result<(), MissingScope> {
        if self.scopes.contains(&scope) { Ok(()) } else { Err(MissingScope(scope)) }
    }
}

/// A call needs a scope its token does not grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this token lacks the {} scope", .0.as_str())]
pub struct MissingScope(pub Scope);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scope_is_named() {
        let p = Principal { tenant: "t".into(), scopes: vec![Scope::Read] };
        assert!(p.require(Scope::Read).is_ok());
        assert_eq!(p.require(Scope::Send), Err(MissingScope(Scope::Send)));
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
