//! Salesforce-style record ids: a 3-character key prefix, 12 base-62 characters and a
//! 3-character case checksum (spec §11). Parsing accepts 15-character ids (normalised to
//! 18) and 18-character ids whose checksum matches; anything else is malformed.
//!
//! New ids are time-local and random, so replicas never coordinate: the first 4 body
//! characters count 64-millisecond ticks (cycling every ~11 days), the other 8 are
//! random. Ids made close together therefore sort close together, so an index on them
//! takes inserts at its hot end instead of on a random page (what keeps SQLite's accept
//! rate flat as the tables grow); ids are not ordered across a cycle and say nothing
//! reliable about time. Message identifiers are UUID version 7 (time-ordered) for the
//! same reason. The only I/O is reading the system clock for that locality.

use std::fmt;

use rand::Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The object an id names; the key prefix says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    MessagingEndUser,
    MessagingChannel,
    MessageDefinition,
    MessagingSession,
    SendRequest,
    CommSubscription,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::MessagingEndUser => "0PA",
            IdKind::MessagingChannel => "0Mj",
            IdKind::MessageDefinition => "1md",
            IdKind::MessagingSession => "0Mw",
            IdKind::SendRequest => "1sr",
            IdKind::CommSubscription => "0Cs",
        }
    }

    pub fn object_name(self) -> &'static str {
        match self {
            IdKind::MessagingEndUser => "MessagingEndUser",
            IdKind::MessagingChannel => "MessagingChannel",
            IdKind::MessageDefinition => "ConversationMessageDefinition",
            IdKind::MessagingSession => "MessagingSession",
            IdKind::SendRequest => "ConvMessageSendRequest",
            IdKind::CommSubscription => "CommSubscription",
        }
    }
}

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 15 or 18 characters, got {0}")]
    Length(usize),
    #[error("must contain only letters and digits")]
    Charset,
    #[error("the 18-character checksum does not match")]
    Checksum,
    #[error("must be a {expected} id (prefix {prefix})")]
    WrongKind { expected: &'static str, prefix: &'static str },
}

/// An 18-character record id of a known kind. Always normalised; compares exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(String);

impl RecordId {
    /// A fresh, time-local random id of `kind` (see the module doc). Uniqueness comes
    /// from the 8 random characters (47 bits per 64-ms tick); the store's primary keys
    /// catch the rare clash, and the write is retried with new ids.
    pub fn generate(kind: IdKind) -> Self {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self::generate_at(kind, ms as u64)
    }

    fn generate_at(kind: IdKind, unix_ms: u64) -> Self {
        const BASE: u64 = 62;
        let mut rng = rand::rng();
        let mut id15 = String::with_capacity(18);
        id15.push_str(kind.prefix());
        let mut tick = (unix_ms >> 6) % BASE.pow(4);
        let mut prefix = [0u8; 4];
        for slot in prefix.iter_mut().rev() {
            *slot = BASE62[(tick % BASE) as usize];
            tick /= BASE;
        }
        id15.extend(prefix.iter().map(|b| *b as char));
        for _ in 0..8 {
            id15.push(BASE62[rng.random_range(0..BASE62.len())] as char);
        }
        let suffix = checksum(&id15);
        id15.push_str(&suffix);
        RecordId(id15)
    }

    /// Parses any well-formed Salesforce id (any prefix).
    pub fn parse_any(input: &str) -> Result<Self, IdError> {
        if !input.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(IdError::Charset);
        }
        match input.len() {
            15 => Ok(RecordId(format!("{input}{}", checksum(input)))),
            18 => {
                let (body, given) = input.split_at(15);
                if checksum(body) == given { Ok(RecordId(input.to_owned())) } else { Err(IdError::Checksum) }
            }
            n => Err(IdError::Length(n)),
        }
    }

    /// Parses an id that must name an object of `kind`.
    pub fn parse(input: &str, kind: IdKind) -> Result<Self, IdError> {
        let id = Self::parse_any(input)?;
        if id.0.starts_with(kind.prefix()) {
            Ok(id)
        } else {
            Err(IdError::WrongKind { expected: kind.object_name(), prefix: kind.prefix() })
        }
    }

    /// Wraps an id read back from the store, which only holds normalised ids.
    pub fn from_trusted(stored: String) -> Self {
        RecordId(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 3-character case checksum of a 15-character id.
fn checksum(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            CHECKSUM_ALPHABET[bits] as char
        })
        .collect()
}

/// A message identifier: a lowercase RFC 4122 v4 UUID.
pub fn new_message_identifier() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Request `Name`: `MSJ-` and the per-tenant sequence, zero-padded to 8 digits.
pub fn request_name(sequence: i64) -> String {
    format!("MSJ-{sequence:08}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_close_in_time_sort_together_and_stay_random() {
        let a = RecordId::generate_at(IdKind::SendRequest, 1_767_225_600_000);
        let b = RecordId::generate_at(IdKind::SendRequest, 1_767_225_600_063);
        let c = RecordId::generate_at(IdKind::SendRequest, 1_767_225_600_064);
        assert_eq!(a.as_str()[..7], b.as_str()[..7], "same 64 ms tick, same prefix");
        assert!(c.as_str()[3..7] > a.as_str()[3..7], "the next tick sorts after");
        assert_ne!(a, b);
        assert!(RecordId::parse(a.as_str(), IdKind::SendRequest).is_ok(), "a valid 18-character id");
        let m = new_message_identifier();
        assert_eq!(uuid::Uuid::parse_str(&m).unwrap().get_version_num(), 7);
    }

    #[test]
    fn the_published_15_character_examples_get_the_published_checksums() {
        assert_eq!(RecordId::parse_any("a0D30000001n7Pi").unwrap().as_str(), "a0D30000001n7PiEAI");
        assert_eq!(RecordId::parse_any("0019000000B98de").unwrap().as_str(), "0019000000B98deAAB");
        assert_eq!(
            RecordId::parse("0PARM000000Lc3I", IdKind::MessagingEndUser).unwrap().as_str(),
            "0PARM000000Lc3I4AS"
        );
        assert_eq!(
            RecordId::parse("0PARM000000MZ3p", IdKind::MessagingEndUser).unwrap().as_str(),
            "0PARM000000MZ3p4AG"
        );
    }

    #[test]
    fn an_18_character_id_with_the_right_checksum_is_kept_as_is() {
        let id = RecordId::parse("0PARM000000Lc3I4AS", IdKind::MessagingEndUser).unwrap();
        assert_eq!(id.as_str(), "0PARM000000Lc3I4AS");
    }

    #[test]
    fn an_18_character_id_with_a_wrong_checksum_is_malformed() {
        assert_eq!(RecordId::parse_any("0PARM000000Lc3I4AA"), Err(IdError::Checksum));
    }

    #[test]
    fn the_15_and_18_character_forms_of_one_id_are_equal_after_parsing() {
        assert_eq!(RecordId::parse_any("0PARM000000Lc3I").unwrap(), RecordId::parse_any("0PARM000000Lc3I4AS").unwrap());
    }

    #[test]
    fn wrong_lengths_and_characters_are_malformed() {
        assert_eq!(RecordId::parse_any("1srM000000000p"), Err(IdError::Length(14)));
        assert_eq!(RecordId::parse_any(""), Err(IdError::Length(0)));
        assert_eq!(RecordId::parse_any("0PARM000000Lc3-"), Err(IdError::Charset));
        assert_eq!(RecordId::parse_any("0PARM000000Lc3é"), Err(IdError::Charset));
    }

    #[test]
    fn an_id_of_another_object_is_rejected_naming_the_expected_prefix() {
        let err = RecordId::parse("0019000000B98de", IdKind::MessagingEndUser).unwrap_err();
        assert_eq!(err, IdError::WrongKind { expected: "MessagingEndUser", prefix: "0PA" });
        assert!(err.to_string().contains("0PA"));
    }

    #[test]
    fn generated_ids_have_the_prefix_and_parse_back() {
        for kind in [
            IdKind::MessagingEndUser,
            IdKind::MessagingChannel,
            IdKind::MessageDefinition,
            IdKind::MessagingSession,
            IdKind::SendRequest,
            IdKind::CommSubscription,
        ] {
            let id = RecordId::generate(kind);
            assert_eq!(id.as_str().len(), 18);
            assert!(id.as_str().starts_with(kind.prefix()));
            assert_eq!(RecordId::parse(id.as_str(), kind).unwrap(), id);
            assert_eq!(RecordId::parse(&id.as_str()[..15], kind).unwrap(), id);
        }
    }

    #[test]
    fn message_identifiers_are_lowercase_uuids() {
        let id = new_message_identifier();
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }

    #[test]
    fn request_names_are_zero_padded_to_eight_digits() {
        assert_eq!(request_name(1), "MSJ-00000001");
        assert_eq!(request_name(123456789), "MSJ-123456789");
    }
}
