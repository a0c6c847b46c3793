//! Record ids: any text either parses or is refused, and what parses is canonical —
//! 18 characters, its 15-character prefix normalising back to it, of the kind it says.
#![no_main]

use convmsg::domain::{IdKind, RecordId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = RecordId::parse_any(text) {
        let canonical = id.as_str().to_owned();
        assert_eq!(canonical.len(), 18, "{canonical}");
        assert_eq!(RecordId::parse_any(&canonical).expect("canonical parses"), id);
        assert_eq!(RecordId::parse_any(&canonical[..15]).expect("its prefix parses"), id);
    }
    for kind in [
        IdKind::MessagingEndUser,
        IdKind::MessagingChannel,
        IdKind::MessageDefinition,
        IdKind::SendRequest,
        IdKind::CommSubscription,
    ] {
        if let Ok(id) = RecordId::parse(text, kind) {
            assert!(id.as_str().starts_with(kind.prefix()), "{id} for {kind:?}");
        }
    }
});
