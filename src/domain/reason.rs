//! The reason vocabularies: why a message failed (`FailedMessageErrorReasons` on the
//! record, `reason` on the wire and in `message.failed` events) and why a held message
//! waits (`waiting_reason`). Typed here; turned into text only where they are stored,
//! sent or counted, by `as_str` and `parse`. No I/O.

use super::model::{Picklist, picklist};

picklist!(
    /// Failure reason codes: the gate's and the dispatcher's own, and those providers
    /// give for permanent failures.
    FailureReason {
        /// The recipient's consent does not allow the message (at send time, or at the provider).
        EndUserIsNotOptedIn => "EndUserIsNotOptedIn",
        ChannelInactive => "ChannelInactive",
        /// The channel needs an approved external template and there is none (usable).
        ApprovedExternalTemplateRequired => "ApprovedExternalTemplateRequired",
        SessionWaitExpired => "SessionWaitExpired",
        RetriesExhausted => "RetriesExhausted",
        MessageDefinitionUnavailable => "MessageDefinitionUnavailable",
        /// A setting the provider needs is missing or wrong (config or channel options).
        ProviderMisconfigured => "ProviderMisconfigured",
        /// The provider refused the message for a reason not listed here.
        ProviderRejected => "ProviderRejected",
        /// The recipient's platform key is not a reachable address on this channel.
        InvalidRecipient => "InvalidRecipient",
        /// A free-form message outside the channel's customer-service window.
        OutsideMessagingWindow => "OutsideMessagingWindow",
        /// The template exists but the provider refused this rendering of it.
        TemplateRejected => "TemplateRejected",
        /// The provider refused our credentials or their permissions.
        ProviderAuthFailed => "ProviderAuthFailed",
        /// A Standard Webhooks endpoint answered 410 Gone: it asks not to be called again.
        EndpointGone => "EndpointGone",
        /// A webhook URL whose scheme or address the operator's rules refuse (not https, or
        /// a loopback, private, link-local… address outside `providers.webhook.allowed_networks`).
        DestinationNotAllowed => "DestinationNotAllowed",
        /// The message's end user was deleted before it could be sent (a request accepted
        /// by a replica that had not yet heard of the delete).
        MessagingEndUserDeleted => "MessagingEndUserDeleted",
        /// `CancelRequest` ended the message before it was sent.
        Canceled => "Canceled",
    }
);

picklist!(
    /// Why a held message waits (`waiting_reason`; not a failure).
    WaitReason {
        /// The request allows `NonActive` sessions only and the end user's is active.
        SessionActive => "SessionActive",
        /// The request allows `Closed` sessions only and the end user's is open.
        SessionOpen => "SessionOpen",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_their_stored_text_and_unknown_text_is_refused() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::parse_api(r.as_str()), Some(*r));
        }
        for r in WaitReason::ALL {
            assert_eq!(WaitReason::parse_api(r.as_str()), Some(*r));
        }
        assert_eq!(FailureReason::MessagingEndUserDeleted.to_string(), "MessagingEndUserDeleted");
        assert_eq!(FailureReason::parse("FailingTooLong"), None);
    }
}
