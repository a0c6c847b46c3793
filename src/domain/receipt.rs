//! Delivery receipts as pure rules: what a provider may report about a message it
//! accepted (sent, delivered, read, failed), and how a report moves the message's
//! delivery state. Providers report out of order and more than once, so the state only
//! ever moves forward: `Sent → Delivered → Read`, or `Sent → Undelivered`; a duplicate
//! or a late report changes nothing. `Read` and `Undelivered` are final. No I/O here.

use super::events::EventType;
use super::model::{Delivery, DeliveryState};

/// What a provider reported about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Handed on to the carrier / the platform.
    Sent,
    /// Reached the device or the gateway's recipient.
    Delivered,
    /// Opened by the recipient.
    Read,
    /// Will not be delivered; the provider's error code, when it gave one.
    Failed { code: Option<String> },
}

impl Report {
    /// The event type an applied report is announced as (`message.delivered`, …), if any.
    pub fn event_type(&self) -> Option<EventType> {
        match self {
            Report::Sent => None,
            Report::Delivered => Some(EventType::MessageDelivered),
            Report::Read => Some(EventType::MessageRead),
            Report::Failed { .. } => Some(EventType::MessageUndelivered),
        }
    }
}

/// Applies `report`, made at `at_ms`, to `delivery`; true when anything changed (the
/// state, or a first timestamp of a step already passed, such as a `delivered` that
/// arrives after `read`). Never moves the state back.
pub fn apply(delivery: &mut Delivery, report: &Report, at_ms: i64) -> bool {
    use DeliveryState::*;
    let before = delivery.clone();
    let fill = |slot: &mut Option<i64>| {
        if slot.is_none() {
            *slot = Some(at_ms);
        }
    };
    match (report, delivery.state) {
        // Final states take nothing more, but a step the provider skipped reporting may
        // still get its timestamp.
        (Report::Sent, Some(Undelivered)) => fill(&mut delivery.sent_ms),
        (_, Some(Undelivered)) => {}
        (Report::Sent, _) => {
            fill(&mut delivery.sent_ms);
            delivery.state.get_or_insert(Sent);
        }
        (Report::Delivered, Some(Read)) => fill(&mut delivery.delivered_ms),
        (Report::Delivered, _) => {
            fill(&mut delivery.delivered_ms);
            delivery.state = Some(Delivered);
        }
        (Report::Read, _) => {
            fill(&mut delivery.read_ms);
            delivery.state = Some(Read);
        }
        // Once delivered, a failure report is out of order: the message got there.
        (Report::Failed { .. }, Some(Delivered | Read)) => {}
        (Report::Failed { code }, None | Some(Sent)) => {
            fill(&mut delivery.undelivered_ms);
            delivery.state = Some(Undelivered);
            delivery.error_code = code.clone();
        }
    }
    *delivery != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    fn sent() -> Delivery {
        Delivery { state: Some(Sent), sent_ms: Some(1), ..Default::default() }
    }

    #[test]
    fn delivered_then_read_moves_forward_and_keeps_each_first_time() {
        let mut d = sent();
        assert!(apply(&mut d, &Report::Delivered, 10));
        assert!(apply(&mut d, &Report::Read, 20));
        assert_eq!((d.state, d.delivered_ms, d.read_ms), (Some(Read), Some(10), Some(20)));
        assert!(!apply(&mut d, &Report::Read, 30), "a duplicate changes nothing");
        assert_eq!(d.read_ms, Some(20));
    }

    #[test]
    fn a_read_never_goes_back_to_delivered_but_the_late_delivered_time_is_kept() {
        let mut d = sent();
        apply(&mut d, &Report::Read, 20);
        assert!(apply(&mut d, &Report::Delivered, 15));
        assert_eq!((d.state, d.delivered_ms), (Some(Read), Some(15)));
        assert!(!apply(&mut d, &Report::Delivered, 16));
    }

    #[test]
    fn a_late_sent_changes_nothing() {
        let mut d = sent();
        apply(&mut d, &Report::Delivered, 10);
        assert!(!apply(&mut d, &Report::Sent, 12));
        assert_eq!(d.state, Some(Delivered));
    }

    #[test]
    fn a_failure_after_sent_is_undelivered_with_the_code_and_final() {
        let mut d = sent();
        assert!(apply(&mut d, &Report::Failed { code: Some("30003".into()) }, 10));
        assert_eq!((d.state, d.error_code.as_deref(), d.undelivered_ms), (Some(Undelivered), Some("30003"), Some(10)));
        assert!(!apply(&mut d, &Report::Delivered, 11));
        assert!(!apply(&mut d, &Report::Failed { code: Some("1".into()) }, 12));
        assert_eq!(d.error_code.as_deref(), Some("30003"));
    }

    #[test]
    fn a_failure_after_delivered_is_out_of_order_and_ignored() {
        let mut d = sent();
        apply(&mut d, &Report::Delivered, 10);
        assert!(!apply(&mut d, &Report::Failed { code: None }, 11));
        assert_eq!(d.state, Some(Delivered));
    }

    #[test]
    fn a_receipt_before_the_send_was_recorded_starts_the_story() {
        let mut d = Delivery::default();
        assert!(apply(&mut d, &Report::Delivered, 10));
        assert_eq!(d.state, Some(Delivered));
    }
}
