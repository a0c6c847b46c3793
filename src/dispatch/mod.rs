//! Delivery. Every replica runs a `Dispatcher`: it claims due requests in FIFO order
//! while fewer than `max_in_progress_requests` are in progress across all replicas (the
//! store enforces the limit inside the claim), and delivers each request's due messages
//! — at most `per_request_concurrency` at once — through the channel's provider:
//! gate (channel, consent, session) → render → rate limit → send → record the outcome.
//! A request whose messages only wait (retries, sessions) goes back to `Pending` and
//! frees its slot. Claims carry a lease renewed while working; a replica that dies
//! loses its leases and another resumes the work (at-least-once; the message identifier
//! travels to providers as the dedup key). No transaction is held across a send.
//!
//! Tracing: each request's turn is a `dispatch.process` span whose parent is the trace
//! context stored at accept (the accept span), with `dispatch.gate`, `dispatch.render`
//! and `provider.send` (a client span) children; the provider receives the
//! `provider.send` span's `traceparent`. Claims that took something are a
//! `dispatch.claim` root span of their own. Metrics count outcomes, retries, lease
//! takeovers and provider latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use crate::clock::SharedClock;
use crate::domain::RecordId;
use crate::domain::delivery::{Gate, render_text, template_for};
use crate::domain::model::{MessageDefinition, RequestStatus};
use crate::domain::params::{ParamValue, params_from_json};
use crate::domain::reason::FailureReason;
use crate::metrics::Metrics;
use crate::providers::{OutboundMessage, ProviderError, Providers, TemplateMessage};
use crate::service::events::Events;
use crate::store::{Claim, ClaimAsk, MessageOutcome, Started, Store, StoreError, Work, WorkItem};

pub mod config;
mod plan;
pub mod policy;

use plan::{RATE_LIMITED, SendTime};

/// After the database failed a claim or a delivery: the first pause before asking again
/// (doubling up to 8× for a claim's retries).
const CLAIM_ERROR_PAUSE: Duration = Duration::from_millis(250);

use policy::RetryPolicy;

/// How the dispatcher behaves; see `[dispatch]` in the config.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub max_in_progress_requests: u32,
    pub per_request_concurrency: usize,
    pub lease_ms: i64,
    pub claim_batch: u32,
    pub poll_interval: Duration,
    pub session_wait_max_ms: i64,
    pub provider_timeout: Duration,
    pub drain_period: Duration,
    pub retry: RetryPolicy,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    providers: Providers,
    clock: SharedClock,
    events: Events,
    settings: DispatchSettings,
    /// This process's name; each claim's lease id is `<owner>#<n>`.
    owner: String,
    /// Claims made so far: numbers the lease ids.
    claims: std::sync::atomic::AtomicU64,
    /// Per-channel rate-limit state (`domain::rates`) where the store serves this
    /// process alone (SQLite); on PostgreSQL it is one row per channel, shared.
    slots: Mutex<HashMap<RecordId, f64>>,
    /// Channels a provider asked to wait (429 + `Retry-After`), until when: sends of
    /// this process holding earlier slots wait too.
    paused: Mutex<HashMap<RecordId, i64>>,
    /// The leases this process holds, by request (one claim call's requests share a
    /// lease id): renewed together by one task, and checked before every send.
    leases: Mutex<HashMap<RecordId, Held>>,
    /// Cancelled on shutdown: sends already started finish, no new send starts, and the
    /// claimed requests go back to the queue for another replica.
    stopping: CancellationToken,
    metrics: Arc<Metrics>,
}

/// What one request's turn came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub request_id: RecordId,
    /// `Completed`, `Pending` (waiting), or `None` when the lease was lost mid-way.
    pub status: Option<RequestStatus>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Providers,
        clock: SharedClock,
        events: Events,
        settings: DispatchSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "convmsg".into());
        let owner = format!("{host}-{}-{:08x}", std::process::id(), rand::rng().random::<u32>());
        Dispatcher {
            store,
            providers,
            clock,
            events,
            settings,
            owner,
            claims: std::sync::atomic::AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            metrics,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and delivers until `shutdown`; then claims nothing more and starts no new
    /// send, lets sends in flight finish within the drain period (each claimed request
    /// then goes back to the queue with what is left), and gives back every lease still
    /// held so another replica resumes at once.
    pub async fn run_until_stopped(self: Arc<Self>, shutdown: CancellationToken) {
        let renewals = tokio::spawn(self.clone().run_renewals_until_stopped());
        let mut running: JoinSet<()> = JoinSet::new();
        // Claims under way: up to what the store serves well (`Store::claims_in_flight`),
        // so on SQLite slots that free while one claim waits for its commit are taken by
        // the next one, not a whole round later.
        let most = self.store.claims_in_flight().max(1);
        let mut claiming = futures_util::stream::FuturesUnordered::new();
        let mut wanted = true;
        loop {
            while running.try_join_next().is_some() {}
            if wanted && claiming.len() < most {
                wanted = false;
                let me = self.clone();
                claiming.push(async move { me.claim().await });
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(claimed) = claiming.next(), if !claiming.is_empty() => {
                    if !self.start_claimed(claimed, &mut running) {
                        // The database cannot serve claims now: wait a little instead
                        // of asking again at every wake-up.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(CLAIM_ERROR_PAUSE.min(self.settings.poll_interval)) => wanted = true,
                        }
                    }
                }
                _ = self.events.wait_for_work() => wanted = true,
                Some(_) = running.join_next(), if !running.is_empty() => wanted = true,
                _ = tokio::time::sleep(self.settings.poll_interval) => wanted = true,
            }
        }
        self.stop_sending();
        // Claims already asked for still come back: their requests take a turn that
        // sends nothing and ends their claims as usual.
        while let Some(claimed) = claiming.next().await {
            self.start_claimed(claimed, &mut running);
        }
        tracing::info!(requests = running.len(), "dispatcher stopping: no more claims; finishing sends in flight");
        if tokio::time::timeout(self.settings.drain_period, async { while running.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("drain period over; abandoning sends still in flight");
            running.abort_all();
        }
        renewals.abort();
        match self.store.release_leases(&self.owner, self.clock.now_ms()).await {
            Ok(n) => tracing::info!(released = n, "dispatcher stopped"),
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "releasing leases failed; they expire by themselves")
            }
        }
    }

    /// Spawns the turn of each request a claim took; false when the claim failed.
    fn start_claimed(self: &Arc<Self>, claimed: Result<Vec<Claim>, StoreError>, running: &mut JoinSet<()>) -> bool {
        match claimed {
            Ok(claims) => {
                for claim in claims {
                    let me = self.clone();
                    running.spawn(async move {
                        let request_id = claim.request_id.clone();
                        if let Err(e) = me.process(claim).await {
                            tracing::warn!(request_id = %request_id, error = %crate::error::error_chain(&e), "delivery interrupted; the request will be resumed");
                        }
                    });
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "claiming requests failed");
                false
            }
        }
    }

    /// The first step of a shutdown: no send starts from now on (sends under way
    /// finish); each claim's messages not yet sent stay due, those its claim began give
    /// their attempt back, and the claims end as usual.
    pub fn stop_sending(&self) {
        self.stopping.cancel();
    }

    /// Claims what the limit allows now, under a lease id of its own.
    pub async fn claim(&self) -> Result<Vec<Claim>, StoreError> {
        let started = Instant::now();
        let lease = format!("{}#{}", self.owner, self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let now = self.clock.now_ms();
        let claims = self
            .store
            .claim_requests(ClaimAsk {
                lease,
                now_ms: now,
                lease_ms: self.settings.lease_ms,
                max_in_progress: self.settings.max_in_progress_requests,
                batch: self.settings.claim_batch,
                prestart: self.prestart(now),
            })
            .await?;
        if !claims.is_empty() {
            let valid_until_ms = self.clock.now_ms() + self.settings.lease_ms;
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            for claim in &claims {
                let held = Held { lease: claim.lease.clone(), valid_until_ms, lost: CancellationToken::new() };
                leases.insert(claim.request_id.clone(), held);
            }
            drop(leases);
            let takeovers = claims.iter().filter(|c| c.takeover).count();
            self.metrics.count_takeovers(takeovers as u64);
            // A span only for claims that took something: an idle poll is not worth a
            // trace. Its own root (the requests it took belong to their callers' traces).
            let span = tracing::info_span!(
                parent: None,
                "dispatch.claim",
                otel.name = "dispatch.claim",
                convmsg.claimed = claims.len(),
                convmsg.takeovers = takeovers,
                convmsg.claim_ms = started.elapsed().as_millis() as u64,
            );
            span.in_scope(|| tracing::debug!(claimed = claims.len(), takeovers, "claimed requests"));
        }
        Ok(claims)
    }

    /// Claims what it can and delivers it to the end; tests drive delivery with this.
    pub async fn run_once(self: &Arc<Self>) -> Result<Vec<Processed>, StoreError> {
        let claims = self.claim().await?;
        let mut out = Vec::with_capacity(claims.len());
        for claim in claims {
            let id = claim.request_id.clone();
            out.push(Processed { request_id: id, status: self.clone().process(claim).await? });
        }
        Ok(out)
    }

    /// Delivers a claimed request's due messages and ends the claim, in a
    /// `dispatch.process` span that continues the trace stored with the request.
    pub async fn process(self: Arc<Self>, claim: Claim) -> Result<Option<RequestStatus>, StoreError> {
        let span = tracing::info_span!(
            parent: None,
            "dispatch.process",
            otel.name = "dispatch.process",
            otel.status_code = Empty,
            convmsg.request_id = %claim.request_id,
            convmsg.tenant = %claim.tenant,
            convmsg.queue_wait_ms = (self.clock.now_ms() - claim.accepted_ms).max(0),
            convmsg.takeover = claim.takeover,
            convmsg.status = Empty,
        );
        if let Some(stored) = &claim.trace_context {
            crate::telemetry::set_parent(&span, crate::telemetry::restore_context(stored));
        }
        let result = self.process_claim(claim).instrument(span.clone()).await;
        match &result {
            Ok(Some(status)) => span.record("convmsg.status", status.to_string()),
            Ok(None) => span.record("convmsg.status", "LeaseLost"),
            Err(_) => span.record("otel.status_code", "ERROR"),
        };
        result
    }

    /// Delivers the claim; when the database fails mid-way (unavailable or busy), tries
    /// again after a pause for as long as the lease holds, so an outage shorter than the
    /// lease does not leave the request waiting for its lease to expire.
    async fn process_claim(self: Arc<Self>, mut claim: Claim) -> Result<Option<RequestStatus>, StoreError> {
        let mut attempt: u32 = 0;
        let mut preloaded = claim.work.take();
        let result = loop {
            match self.clone().process_claim_once(&claim, preloaded.take()).await {
                Err(e @ (StoreError::Unavailable(_) | StoreError::Busy(_)))
                    if !self.stopping.is_cancelled()
                        && self.may_send(&claim.request_id, &claim.lease, self.clock.now_ms()) =>
                {
                    attempt += 1;
                    let pause = CLAIM_ERROR_PAUSE * 2u32.pow(attempt.min(3));
                    tracing::warn!(request_id = %claim.request_id, attempt, error = %crate::error::error_chain(&e), "delivery interrupted; trying the claim again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.stopping.cancelled() => break Err(e),
                    }
                }
                other => break other,
            }
        };
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        // A newer claim of the same request (a takeover by this process) keeps its own.
        if leases.get(&claim.request_id).is_some_and(|h| h.lease == claim.lease) {
            leases.remove(&claim.request_id);
        }
        drop(leases);
        result
    }

    /// One go at the claim: with the work read at the claim, or read now.
    async fn process_claim_once(
        self: Arc<Self>,
        claim: &Claim,
        preloaded: Option<Box<Work>>,
    ) -> Result<Option<RequestStatus>, StoreError> {
        async {
            let work = match preloaded {
                Some(work) => *work,
                None => self.store.load_work(claim, self.clock.now_ms()).await?,
            };
            let params = params_from_json(&work.parameters_json);
            let now = self.clock.now_ms();
            if work.items.iter().any(|item| item.started) {
                self.events.request_changed(&work.request_id); // InProgress since the claim
            }
            let decisions: Vec<Gate> = work.items.iter().map(|item| self.decide(&work, item, now)).collect();
            let times = self.plan_send_times(&work, &decisions, now).await?;
            let mut sends: Vec<_> = work.items.iter().zip(decisions).zip(times).collect();
            // The messages the claim began go first: they are the first wave of the
            // per-request concurrency, sent at once.
            sends.sort_by_key(|((item, _), _)| !item.started);
            let sends: Vec<_> = sends
                .into_iter()
                .map(|((item, decision), time)| self.deliver(&work, &params, item, decision, time))
                .collect();
            // A message's slot frees once its outcome is queued with the writer, not
            // committed; the answers are awaited meanwhile (they tell the request's
            // watchers). The claim's finish is queued behind the last outcome, and the
            // writer applies writes in the order queued: most often they share a commit.
            let mut sends =
                futures_util::stream::iter(sends).buffer_unordered(self.settings.per_request_concurrency.max(1));
            let mut answers = futures_util::stream::FuturesUnordered::new();
            let mut lost = false;
            // The message stays due if its outcome was not recorded: finishing the
            // claim makes it Pending again.
            let mut note = |kept: Result<bool, StoreError>| match kept {
                Ok(kept) => lost |= !kept,
                Err(e) => tracing::warn!(error = %crate::error::error_chain(&e), "recording a message outcome failed"),
            };
            loop {
                tokio::select! {
                    queued = sends.next() => match queued {
                        Some(Ok(answer)) => answers.push(answer),
                        Some(Err(e)) => note(Err(e)),
                        None => break,
                    },
                    Some(kept) = answers.next(), if !answers.is_empty() => note(kept),
                }
            }
            let finish = self.store.finish_request(&claim.lease, &claim.request_id, self.clock.now_ms()).await;
            if finish.is_ok() {
                // The slot frees with this commit: the claim loop queues its next claim
                // behind the finish, so the claim takes the slot in the same commit.
                self.events.work_available();
            }
            while let Some(kept) = answers.next().await {
                note(kept);
            }
            let status = finish?.await?;
            if lost {
                return Ok(None);
            }
            if status.is_some() {
                self.events.request_changed(&claim.request_id);
                if status == Some(RequestStatus::Completed) {
                    self.events.events_enqueued(); // request.completed
                }
                if status == Some(RequestStatus::Pending) {
                    // It may already be due again (a retry in the past): look at once.
                    self.events.work_available();
                }
            }
            Ok(status)
        }
        .await
    }

    /// Renews every lease this process holds, in one write, every third of the lease
    /// length: a renewal is due long before expiry even when one write is slow, and it
    /// goes through the dispatcher's own writer, never behind callers. A lease that was
    /// not renewed (expired, taken over) is marked lost: its claim sends nothing more.
    async fn run_renewals_until_stopped(self: Arc<Self>) {
        let every = Duration::from_millis((self.settings.lease_ms / 3).max(10) as u64);
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<(String, RecordId)> = {
                let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                leases
                    .iter()
                    .filter(|(_, h)| !h.lost.is_cancelled())
                    .map(|(r, h)| (h.lease.clone(), r.clone()))
                    .collect()
            };
            if held.is_empty() {
                continue;
            }
            let now = self.clock.now_ms();
            let until = now + self.settings.lease_ms;
            match self.store.renew_leases(&held, now, until).await {
                Ok(renewed) => {
                    let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                    for ((lease, request), ok) in held.iter().zip(renewed) {
                        if let Some(h) = leases.get_mut(request).filter(|h| h.lease == *lease) {
                            if ok {
                                h.valid_until_ms = h.valid_until_ms.max(until);
                            } else {
                                h.lost.cancel();
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), leases = held.len(), "lease renewal failed")
                }
            }
        }
    }

    /// Whether the claim may still send: its lease is held, not lost, and valid for a
    /// safety margin (a third of the lease) beyond `now`, so no other replica can take
    /// the request over while the send is under way.
    fn may_send(&self, request: &RecordId, lease: &str, now: i64) -> bool {
        let margin = self.settings.lease_ms / 3;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(request)
            .is_some_and(|h| h.lease == lease && !h.lost.is_cancelled() && now + margin < h.valid_until_ms)
    }

    /// Renders and sends one message the gate decided on, and queues the outcome.
    /// The answer comes to `false` when the lease was lost (another replica owns the
    /// request now).
    async fn deliver(
        &self,
        work: &Work,
        params: &[ParamValue],
        item: &WorkItem,
        decision: Gate,
        time: SendTime,
    ) -> Result<Recorded, StoreError> {
        if self.stopping.is_cancelled() {
            // Shutting down: the message stays due for whoever resumes.
            return self.not_sent(work, item).await;
        }
        let outcome = match decision {
            Gate::Fail(reason) => MessageOutcome::Failed { reason },
            Gate::Wait { reason, since_ms, recheck_at_ms } => {
                MessageOutcome::Wait { reason, since_ms, recheck_at_ms, loaded_at_ms: work.loaded_at_ms }
            }
            Gate::Send => {
                if let SendTime::Later(at_ms) = time {
                    // Back to the queue until the channel's slots near: no attempt counted.
                    let outcome = MessageOutcome::Retry { at_ms, error: RATE_LIMITED.into() };
                    let queued = self
                        .store
                        .record_outcome(&work.lease, &work.request_id, &item.identifier, &outcome, self.clock.now_ms())
                        .await?;
                    self.metrics.count_message("rate_limited", "none");
                    return Ok(Box::pin(queued));
                }
                match tracing::info_span!(
                    "dispatch.render",
                    otel.name = "dispatch.render",
                    messaging.message.id = %item.identifier
                )
                .in_scope(|| self.prepare(work, params, item))
                {
                    Err(reason) => MessageOutcome::Failed { reason },
                    Ok(message) => return self.send(work, item, message, time).await,
                }
            }
        };
        self.record(work, item, outcome).await
    }

    fn prepare(&self, work: &Work, params: &[ParamValue], item: &WorkItem) -> Result<OutboundMessage, FailureReason> {
        let definition: &MessageDefinition =
            work.definition.as_ref().ok_or(FailureReason::MessageDefinitionUnavailable)?;
        let template = template_for(item.channel.message_type, definition, params)?;
        Ok(OutboundMessage {
            message_identifier: item.identifier.clone(),
            request_id: work.request_id.to_string(),
            tenant: work.tenant.clone(),
            end_user_id: item.end_user.id.to_string(),
            recipient: item.platform_key.clone(),
            channel_developer_name: item.channel.developer_name.clone(),
            channel_platform_key: item.channel.messaging_platform_key.clone(),
            channel_options: item.channel.provider_options.clone(),
            definition_api_name: work.definition_name.clone(),
            text: render_text(&definition.text_layout, params),
            template: template.map(|t| TemplateMessage {
                name: t.name,
                language: t.language,
                body_parameters: t.body_parameters,
            }),
            // The stored context's `traceparent` line; `send` replaces it with the
            // provider call span's own.
            traceparent: work.trace_context.as_deref().and_then(|c| c.split('\n').next()).map(str::to_owned),
        })
    }

    async fn send(
        &self,
        work: &Work,
        item: &WorkItem,
        mut message: OutboundMessage,
        time: SendTime,
    ) -> Result<Recorded, StoreError> {
        let Some(provider) = self.providers.get(item.channel.provider) else {
            let outcome = MessageOutcome::Failed { reason: FailureReason::ProviderMisconfigured };
            return self.record(work, item, outcome).await;
        };
        let mut send_at = match time {
            SendTime::At(at) => at,
            SendTime::Now | SendTime::Later(_) => self.clock.now_ms(),
        };
        loop {
            tokio::select! {
                _ = self.clock.sleep_until(send_at) => {}
                _ = self.stopping.cancelled() => return self.not_sent(work, item).await, // stays due
            }
            // A provider paused the channel meanwhile: wait for the pause too.
            match self.paused_until(&item.channel.id) {
                Some(until) if until > self.clock.now_ms() => send_at = until,
                _ => break,
            }
        }
        let now = self.clock.now_ms();
        if !self.may_send(&work.request_id, &work.lease, now) {
            return Ok(known(false));
        }
        // The fence before the provider call: the lease still holds and the message is
        // still to send (a cancel on any replica makes it final first). A message its
        // claim began passed the same fence in the claim's transaction.
        if !item.started {
            match self.store.start_message(&work.lease, &work.request_id, &item.identifier, now).await? {
                Started::Sending => {}
                Started::LeaseLost => return Ok(known(false)),
                Started::Final => return Ok(known(true)),
            }
            self.events.request_changed(&work.request_id);
        }
        let attempts = item.attempts + 1;
        // HTTP providers fill in the `http.*`, `url.full` and `server.address` fields.
        let span = tracing::info_span!(
            "provider.send",
            otel.name = "provider.send",
            otel.kind = "client",
            otel.status_code = Empty,
            convmsg.provider = provider.name().as_str(),
            messaging.message.id = %item.identifier,
            convmsg.attempt = attempts,
            convmsg.outcome = Empty,
            http.request.method = Empty,
            url.full = Empty,
            http.response.status_code = Empty,
            server.address = Empty,
        );
        // The provider sees this call's span as the parent of whatever it does.
        if let Some(traceparent) = crate::telemetry::traceparent_of(&span) {
            message.traceparent = Some(traceparent);
        }
        let started = Instant::now();
        let call = tokio::time::timeout(self.settings.provider_timeout, provider.send(&message));
        let (result, label) = match call.instrument(span.clone()).await {
            Ok(Ok(delivered)) => (Ok(delivered), "success"),
            Ok(Err(e @ ProviderError::Transient { .. })) => (Err(e), "transient"),
            Ok(Err(e)) => (Err(e), "permanent"),
            Err(_) => (
                Err(ProviderError::Transient { detail: "provider call timed out".into(), retry_after: None }),
                "timeout",
            ),
        };
        self.metrics.observe_provider(provider.name(), label, started.elapsed());
        span.record("convmsg.outcome", label);
        if label != "success" {
            span.record("otel.status_code", "ERROR");
        }
        drop(span);
        let outcome = match result {
            Ok(delivered) => MessageOutcome::Success { provider_message_id: delivered.provider_message_id },
            Err(ProviderError::Permanent { reason, detail }) => {
                tracing::info!(message_identifier = %item.identifier, %reason, %detail, "message failed");
                MessageOutcome::Failed { reason }
            }
            Err(ProviderError::Transient { detail, retry_after }) => {
                if let Some(wait) = retry_after {
                    // The provider asked for a pause: the whole channel takes it.
                    let until = self.clock.now_ms() + wait.as_millis().min(policy::MAX_RETRY_AFTER_MS as u128) as i64;
                    self.pause_channel(&item.channel.id, until).await;
                }
                let unit: f64 = rand::rng().random();
                match self.settings.retry.next_delay_ms(attempts, retry_after, unit) {
                    Some(delay) => MessageOutcome::Retry { at_ms: self.clock.now_ms() + delay as i64, error: detail },
                    None => {
                        tracing::info!(message_identifier = %item.identifier, attempts, %detail, "retries exhausted");
                        MessageOutcome::Failed { reason: FailureReason::RetriesExhausted }
                    }
                }
            }
        };
        self.record(work, item, outcome).await
    }

    /// A message that is not sent in this turn stays due: one its claim began gives its
    /// attempt back, any other was never touched.
    async fn not_sent(&self, work: &Work, item: &WorkItem) -> Result<Recorded, StoreError> {
        if item.started { self.record(work, item, MessageOutcome::NotSent).await } else { Ok(known(true)) }
    }

    /// Queues the outcome; once it is committed, tells the request's watchers and counts it.
    async fn record(&self, work: &Work, item: &WorkItem, outcome: MessageOutcome) -> Result<Recorded, StoreError> {
        let queued = self
            .store
            .record_outcome(&work.lease, &work.request_id, &item.identifier, &outcome, self.clock.now_ms())
            .await?;
        let (events, metrics, request) = (self.events.clone(), self.metrics.clone(), work.request_id.clone());
        Ok(Box::pin(async move {
            let kept = queued.await?;
            if kept {
                events.request_changed(&request);
                if !matches!(outcome, MessageOutcome::Success { .. }) {
                    // message.failed (a retry, a hold or a send not made of a cancelled
                    // request fails too)
                    events.events_enqueued();
                }
                match &outcome {
                    MessageOutcome::Success { .. } => metrics.count_message("delivered", "none"),
                    MessageOutcome::Failed { reason } => metrics.count_message("failed", reason.as_str()),
                    MessageOutcome::Retry { .. } => {
                        metrics.count_message("retry", "Transient");
                        metrics.count_retry();
                    }
                    MessageOutcome::Wait { reason, .. } => metrics.count_message("waiting", reason.as_str()),
                    MessageOutcome::NotSent => {}
                }
            }
            Ok(kept)
        }))
    }
}

/// A message's turn once its outcome is queued: awaiting it gives whether the outcome
/// was kept (false: the lease was lost).
type Recorded = futures_util::future::BoxFuture<'static, Result<bool, StoreError>>;

/// A turn whose answer is known without a write.
fn known(kept: bool) -> Recorded {
    Box::pin(std::future::ready(Ok(kept)))
}

/// A lease this process holds.
struct Held {
    /// The claim's lease id.
    lease: String,
    /// Until when the lease holds, as of its claim or last renewal.
    valid_until_ms: i64,
    /// Cancelled when a renewal found the lease gone.
    lost: CancellationToken,
}
