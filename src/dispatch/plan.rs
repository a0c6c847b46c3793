//! What each due message of a claim comes to before anything is sent: the gate's
//! decision, and — for a rate-limited channel — its send slot, taken for all of the
//! claim's messages on that channel at once (from the store where replicas share the
//! limit, else from this process's state), or back to the queue when no slot is free
//! within the horizon; and a provider's pause of a channel. The rate rule is
//! `domain::rates`.

use std::sync::Arc;

use super::Dispatcher;
use crate::domain::RecordId;
use tracing::field::Empty;

use crate::domain::delivery::{Gate, GateInput, gate};
use crate::domain::rates::{SlotGrant, grant_slots, pause_slots};
use crate::store::{Prestart, StoreError, Work, WorkItem};

/// The `last_error` of a message sent back to the queue by its channel's rate limit.
pub(super) const RATE_LIMITED: &str = "waiting for the channel's rate limit";

/// When a message the gate lets through may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendTime {
    /// The channel has no rate limit.
    Now,
    /// At its slot of the channel's rate limit.
    At(i64),
    /// No slot within the horizon: back to the queue, due at this time.
    Later(i64),
}

/// Whether a channel's sends wait for slots of a rate limit.
pub(super) fn rate_limited(rate: f64) -> bool {
    rate > 0.0 && rate.is_finite()
}

/// What the gate looks at for one message.
pub(super) fn gate_input(work: &Work, item: &WorkItem, now: i64, session_wait_max_ms: i64) -> GateInput {
    GateInput {
        channel_active: item.channel.is_active,
        enforce_consent: work.enforce_consent,
        consent_type: work.consent_type,
        end_user_consent: item.end_user.consent_status,
        channel_required: item.channel.consent_type,
        subscription_consent: item.subscription_consent,
        allowed_session_status: work.allowed_session_status,
        session_status: item.session_status,
        waiting_since_ms: item.waiting_since_ms,
        now_ms: now,
        session_wait_max_ms,
    }
}

impl Dispatcher {
    /// What a claim begins at once (`store::Prestart`): the messages this dispatcher
    /// would send right away — the gate lets them through, their channel has no rate
    /// limit and no provider's pause, and its provider is configured — at most the
    /// per-request concurrency of each request, the first wave of its sends.
    pub(super) fn prestart(&self, now: i64) -> Prestart {
        let paused: Vec<RecordId> = {
            let paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
            paused.iter().filter(|(_, until)| **until > now).map(|(c, _)| c.clone()).collect()
        };
        let configured: Vec<&'static str> = self.providers.names().collect();
        let wait_max = self.settings.session_wait_max_ms;
        Prestart {
            per_request: self.settings.per_request_concurrency.max(1),
            eligible: Arc::new(move |work, item| {
                !rate_limited(item.channel.rate_limit_per_second)
                    && !paused.contains(&item.channel.id)
                    && configured.contains(&item.channel.provider.as_str())
                    && gate(&gate_input(work, item, now, wait_max)) == Gate::Send
            }),
        }
    }

    /// The gate's decision for one message (channel, consent, session), in a
    /// `dispatch.gate` span.
    pub(super) fn decide(&self, work: &Work, item: &WorkItem, now: i64) -> Gate {
        let gate_span = tracing::info_span!(
            "dispatch.gate",
            otel.name = "dispatch.gate",
            messaging.message.id = %item.identifier,
            convmsg.decision = Empty,
        );
        let decision = gate_span.in_scope(|| {
            if item.started {
                // Its claim decided and began the send (`prestart`).
                Gate::Send
            } else {
                gate(&gate_input(work, item, now, self.settings.session_wait_max_ms))
            }
        });
        gate_span.record(
            "convmsg.decision",
            match &decision {
                Gate::Send => "send",
                Gate::Fail(_) => "fail",
                Gate::Wait { .. } => "wait",
            },
        );
        decision
    }

    /// When each message the gate lets through may be sent: at once, or at a slot of its
    /// channel's rate limit — taken for all of a channel's messages of this claim at once
    /// (one round trip on PostgreSQL, where every replica shares the channel's state) —
    /// or, when no slot is free within the horizon, back in the queue until one is near.
    pub(super) async fn plan_send_times(
        &self,
        work: &Work,
        decisions: &[Gate],
        now: i64,
    ) -> Result<Vec<SendTime>, StoreError> {
        let mut times = vec![SendTime::Now; work.items.len()];
        let mut by_channel: Vec<(&RecordId, f64, Vec<usize>)> = Vec::new();
        for (i, (item, decision)) in work.items.iter().zip(decisions).enumerate() {
            let rate = item.channel.rate_limit_per_second;
            if *decision != Gate::Send || !rate_limited(rate) {
                continue;
            }
            match by_channel.iter_mut().find(|(c, ..)| **c == item.channel.id) {
                Some((.., members)) => members.push(i),
                None => by_channel.push((&item.channel.id, rate, vec![i])),
            }
        }
        let horizon = (self.settings.lease_ms / 3).max(100);
        for (channel, rate, members) in by_channel {
            let want = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let grant = match self.store.reserve_send_slots(channel, rate, want, now, horizon).await? {
                Some(grant) => grant,
                None => self.grant_in_process(channel, rate, want, now, horizon),
            };
            for (k, i) in members.into_iter().enumerate() {
                let k = k as u32;
                times[i] = if k < grant.granted {
                    SendTime::At(grant.send_at(k, now))
                } else {
                    SendTime::Later(grant.retry_at_ms)
                };
            }
        }
        Ok(times)
    }

    fn grant_in_process(&self, channel: &RecordId, rate: f64, want: u32, now: i64, horizon: i64) -> SlotGrant {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let grant = grant_slots(slots.get(channel).copied(), now, rate, want, horizon);
        slots.insert(channel.clone(), grant.tat);
        grant
    }

    /// A provider asked the channel to wait until `until_ms`: no slot starts before then
    /// — in this process at once, on every replica for the slots they take next.
    pub(super) async fn pause_channel(&self, channel: &RecordId, until_ms: i64) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let tat = pause_slots(slots.get(channel).copied(), until_ms);
            slots.insert(channel.clone(), tat);
        }
        {
            let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
            let until = paused.entry(channel.clone()).or_insert(until_ms);
            *until = (*until).max(until_ms);
        }
        if let Err(e) = self.store.pause_channel(channel, until_ms).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "pausing the channel for the other replicas failed");
        }
    }

    pub(super) fn paused_until(&self, channel: &RecordId) -> Option<i64> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).get(channel).copied()
    }
}
