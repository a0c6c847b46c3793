//! Durable state behind one trait. `sqlite` is the embedded default; `postgres` serves
//! several replicas sharing one queue. Both are the one implementation in `shared`: the
//! SQL is written once (`sql`), and a backend says only how it gets connections and
//! transactions and how it claims. Writes on the hot paths go through group-commit
//! `writer`s. Every row carries its tenant and every read filters on it, so one tenant
//! never sees another's records. Accepting a send request is one transaction (request,
//! messages, idempotency entry), shared with whatever else commits with it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::admin::{ChannelUpsert, DefinitionUpsert, EndUserUpsert, SubscriptionUpsert};
use crate::domain::events::EventEndpoint;
use crate::domain::model::*;
use crate::domain::reason::{FailureReason, WaitReason};
use crate::domain::send::NewSendRequest;
use crate::domain::{ErrorKind, RecordId, Violation};

pub mod health;
pub mod postgres;
pub mod reads;
mod rows;
pub mod shared;
pub mod sql;
pub mod sqlite;
pub mod tokens;
pub mod writer;

pub use reads::RequestReads;
pub use sql::outbox::{Attempt, AttemptResult, Disabled, DueDelivery, EndpointChange};
pub use sql::receipts::{MessageKey, Receipt, ReceiptOutcome};
pub use tokens::{ActiveToken, TokenGrant, TokenRecord, TokenSource};
pub use writer::Queued;

/// Cloneable so that one failed group commit can be reported to every caller in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (connection refused or lost, shut down, disk full,
    /// I/O error) or is known to be down; retrying later may help.
    #[error("database unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// The database is up but could not take this now (no pool connection in time, a lock
    /// or statement timeout, a serialization failure): the server is busy, not broken.
    #[error("database busy")]
    Busy(#[source] Arc<sqlx::Error>),
    /// Anything else from the database: a bug or a broken schema.
    #[error("database error")]
    Database(#[source] Arc<sqlx::Error>),
    /// A stored value does not parse: the data was changed outside convmsg.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The request conflicts with stored records (caller's mistake).
    #[error("{}", .0.message)]
    Conflict(Violation),
    #[error("database migration failed")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
}

/// What a database failure says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Cannot be reached or cannot serve at all.
    Down,
    /// Up, but overloaded for the moment.
    Busy,
    /// This statement failed (a bug, a constraint).
    Statement,
}

fn classify(e: &sqlx::Error) -> Failure {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => Failure::Busy,
        // A transaction-state error means the connection's state is in doubt (after an I/O
        // error, say); a new connection serves the retry.
        E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed | E::InvalidSavePointStatement | E::BeginFailed => {
            Failure::Down
        }
        E::Database(db) if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() => {
            classify_pg(db.code().as_deref())
        }
        E::Database(db) => classify_sqlite(db.code().as_deref()),
        _ => Failure::Statement,
    }
}

/// SQLite result codes (primary code in the low byte): BUSY and LOCKED are a lock held
/// past `busy_timeout`; READONLY, IOERR, FULL and CANTOPEN mean the file cannot be written.
fn classify_sqlite(code: Option<&str>) -> Failure {
    match code.and_then(|c| c.parse::<i32>().ok()).map(|n| n & 0xff) {
        Some(5 | 6) => Failure::Busy,
        Some(8 | 10 | 13 | 14) => Failure::Down,
        _ => Failure::Statement,
    }
}

/// PostgreSQL SQLSTATEs: connection exceptions (class 08), an administrator or crash
/// shutdown or "cannot connect now" (57P01–57P03), out of disk or memory (53100, 53200),
/// a read-only standby after a failover (25006) mean down; a statement or lock timeout
/// (57014, 55P03), too many connections (53300), serialization failures and deadlocks
/// (class 40) mean busy.
fn classify_pg(code: Option<&str>) -> Failure {
    match code {
        Some(c) if c.starts_with("08") => Failure::Down,
        Some("57P01" | "57P02" | "57P03" | "53100" | "53200" | "25006") => Failure::Down,
        Some("57014" | "55P03" | "53300") => Failure::Busy,
        Some(c) if c.starts_with("40") => Failure::Busy,
        Some(c) if c.starts_with("57") || c.starts_with("53") => Failure::Down,
        _ => Failure::Statement,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            Failure::Down => StoreError::Unavailable(Arc::new(e)),
            Failure::Busy => StoreError::Busy(Arc::new(e)),
            Failure::Statement => StoreError::Database(Arc::new(e)),
        }
    }
}

impl StoreError {
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Conflict(Violation::new(field, ErrorKind::InvalidInput, message))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What recording a send request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Recorded now.
    Created(Accepted),
    /// The idempotency key was seen with the same request: the first answer.
    Replayed(Accepted),
    /// The idempotency key was seen with a different request; nothing recorded.
    KeyConflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub request_id: RecordId,
    pub message_identifiers: Vec<String>,
}

/// One page of a listing, ordered by id.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Id of the last item when more may follow.
    pub next_after: Option<RecordId>,
}

/// How a record is addressed: by id or by its unique name.
#[derive(Debug, Clone)]
pub enum Key {
    Id(RecordId),
    Name(String),
}

/// Reads over many requests (queries, replication) are the supertrait `RequestReads`
/// (`reads`).
#[async_trait]
pub trait Store: RequestReads + Send + Sync + 'static {
    // tokens (see `tokens`)
    /// Grants a token — inserts it, or updates its tenant, scopes, label, source and
    /// expiry — unless it was revoked; `false` when it stays revoked.
    async fn upsert_token(&self, grant: &TokenGrant, now_ms: i64) -> StoreResult<bool>;
    /// Tokens neither revoked nor expired at `now_ms`.
    async fn load_tokens(&self, now_ms: i64) -> StoreResult<Vec<ActiveToken>>;
    /// Every token of the tenant, revoked and expired ones included, oldest first.
    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>>;
    /// Marks one of the tenant's tokens revoked (a second revocation keeps the first
    /// time); `None` when the tenant has no such token.
    async fn revoke_token(&self, tenant: &str, sha256: &str, now_ms: i64) -> StoreResult<Option<TokenRecord>>;
    /// Deletes the tokens granted by `source` whose hash is not in `keep`; how many.
    async fn remove_tokens_except(&self, source: TokenSource, keep: &[String]) -> StoreResult<u64>;

    // channels
    async fn upsert_channel(&self, tenant: &str, c: ChannelUpsert, now_ms: i64) -> StoreResult<(Channel, bool)>;
    async fn get_channel(&self, tenant: &str, key: &Key) -> StoreResult<Option<Channel>>;
    async fn list_channels(&self, tenant: &str, after: Option<&RecordId>, limit: u32) -> StoreResult<Page<Channel>>;
    /// The channel `id` and the tenant that owns it (provider callbacks name only the channel).
    async fn find_channel_owner(&self, id: &RecordId) -> StoreResult<Option<(String, Channel)>>;

    // messaging components
    async fn upsert_definition(
        &self,
        tenant: &str,
        d: DefinitionUpsert,
        now_ms: i64,
    ) -> StoreResult<(MessageDefinition, bool)>;
    async fn get_definition(&self, tenant: &str, key: &Key) -> StoreResult<Option<MessageDefinition>>;
    async fn list_definitions(
        &self,
        tenant: &str,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<MessageDefinition>>;

    // end users
    /// All or nothing, in one transaction; results in input order.
    async fn upsert_end_users(&self, tenant: &str, users: Vec<EndUserUpsert>, now_ms: i64)
    -> StoreResult<Vec<EndUser>>;
    /// The end users of this tenant among `ids` (unknown ids are simply absent).
    async fn find_end_users(&self, tenant: &str, ids: &[RecordId]) -> StoreResult<Vec<EndUser>>;
    async fn list_end_users(
        &self,
        tenant: &str,
        channel: Option<&RecordId>,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<EndUser>>;

    // sessions and subscriptions
    async fn set_session_status(
        &self,
        tenant: &str,
        end_user: &RecordId,
        status: SessionStatus,
        now_ms: i64,
    ) -> StoreResult<Option<Session>>;
    async fn upsert_subscription(
        &self,
        tenant: &str,
        s: SubscriptionUpsert,
        now_ms: i64,
    ) -> StoreResult<(Subscription, bool)>;
    async fn get_subscription(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<Subscription>>;
    /// Returns how many consents were set; end users outside the subscription's channel are a conflict.
    async fn set_subscription_consent(
        &self,
        tenant: &str,
        subscription: &RecordId,
        end_users: &[RecordId],
        status: SubscriptionConsentStatus,
        now_ms: i64,
    ) -> StoreResult<u32>;

    // delivery
    /// Claims up to `ask.batch` due requests in FIFO order under the lease id
    /// `ask.lease` (`<process owner>#<n>`, new for every call) with a lease until
    /// `now + lease_ms`, never letting the number of leased `InProgress` requests (all
    /// owners) exceed `max_in_progress`. Requests whose lease expired are taken over.
    /// The first wave of each request's messages that `ask.prestart` picks begins its
    /// send in the claim's own transaction (`WorkItem::started`).
    async fn claim_requests(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>>;
    /// How many claims one dispatcher may have under way at once: 3 where a claim is a
    /// write of the dispatcher's group commit (SQLite: a claim queued while another waits
    /// for its commit rides the next batch and takes the slots that batch's claim ends
    /// free, so every batch can carry one), 1 where each claim is a transaction of its
    /// own under the claim lock (PostgreSQL: a second would only wait at the lock,
    /// holding a connection; measured, it did not help).
    fn claims_in_flight(&self) -> usize {
        1
    }
    /// What a claimed request needs to send its due messages.
    async fn load_work(&self, claim: &Claim, now_ms: i64) -> StoreResult<Work>;
    /// Extends each lease (lease id, request) still held at `now_ms` to `until_ms`, in one
    /// write; whether each was, in order (false: expired, or taken by another claim).
    async fn renew_leases(&self, leases: &[(String, RecordId)], now_ms: i64, until_ms: i64) -> StoreResult<Vec<bool>>;
    /// Marks a message InProgress and counts the attempt (group-committed with other
    /// writes), unless the lease was lost or the message is final (cancelled): the
    /// dispatcher calls the provider only after `Started::Sending`.
    async fn start_message(
        &self,
        owner: &str,
        request: &RecordId,
        identifier: &str,
        now_ms: i64,
    ) -> StoreResult<Started>;
    /// Queues what happened to a message with the group-commit writer; awaiting the
    /// answer gives whether it was recorded once committed (false: the lease was lost).
    /// The caller need not wait before queuing the claim's finish: writes are applied in
    /// the order queued, most often in one commit.
    async fn record_outcome(
        &self,
        owner: &str,
        request: &RecordId,
        identifier: &str,
        outcome: &MessageOutcome,
        now_ms: i64,
    ) -> StoreResult<Queued<bool>>;
    /// Queues the end of `owner`'s claim, after the outcomes queued before it: Completed
    /// when every message is final, else Pending again, due when its earliest message
    /// is. The answer is `None` when the lease was lost.
    async fn finish_request(
        &self,
        owner: &str,
        request: &RecordId,
        now_ms: i64,
    ) -> StoreResult<Queued<Option<RequestStatus>>>;
    /// Gives back every lease the process `owner` holds (lease ids `<owner>#…`, at
    /// shutdown), so other replicas resume at once.
    async fn release_leases(&self, owner: &str, now_ms: i64) -> StoreResult<u64>;
    /// Requests by status and the queue's health, from maintained counts and indexes
    /// (never a count over every request).
    async fn queue_stats(&self, now_ms: i64) -> StoreResult<QueueStats>;
    /// Connections of the pool by state (for the metrics; no database round trip).
    fn pool_stats(&self) -> PoolStats;
    /// False while the database is known down (calls then fail at once; `/readyz` 503).
    fn is_available(&self) -> bool;

    // receipts
    /// Records providers' delivery receipts through the delivery writer (group-committed);
    /// an outcome per receipt, in order. Duplicates and late reports change nothing.
    async fn record_receipts(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>>;

    // status events (see `sql::outbox`)
    /// A new event endpoint; `None` when the tenant already has one of that name.
    async fn create_event_endpoint(
        &self,
        tenant: &str,
        endpoint: &EventEndpoint,
        secret: &str,
    ) -> StoreResult<Option<EventEndpoint>>;
    /// Creates or updates the endpoint of that name (the config file's); keeps its id and
    /// whether it is enabled.
    async fn declare_event_endpoint(
        &self,
        tenant: &str,
        endpoint: &EventEndpoint,
        secret: &str,
    ) -> StoreResult<EventEndpoint>;
    async fn list_event_endpoints(&self, tenant: &str) -> StoreResult<Vec<EventEndpoint>>;
    async fn update_event_endpoint(
        &self,
        tenant: &str,
        id: &str,
        change: &EndpointChange,
        now_ms: i64,
    ) -> StoreResult<Option<EventEndpoint>>;
    async fn delete_event_endpoint(&self, tenant: &str, id: &str) -> StoreResult<bool>;
    /// Queues again the events of [`since_ms`, `until_ms`) an endpoint (or every one of
    /// the tenant's) did not get or failed to take; how many deliveries.
    async fn replay_events(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<u64>;
    /// Leases due event deliveries (nothing is written when none is due).
    async fn claim_event_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records attempts; the endpoints disabled for failing since before `disable_before_ms`.
    async fn record_event_attempts(
        &self,
        results: &[AttemptResult],
        disable_before_ms: i64,
    ) -> StoreResult<Vec<Disabled>>;

    // retention
    /// Deletes up to `limit` requests that completed before `before_ms`, with their
    /// messages and idempotency keys; pending and in-progress requests are never touched.
    /// Returns how many requests were deleted (fewer than `limit`: nothing more is due).
    async fn purge_completed(&self, before_ms: i64, limit: u32) -> StoreResult<u64>;

    // send requests
    /// Records a checked request in one transaction. Concurrent calls may share a commit.
    async fn accept(&self, tenant: &str, request: NewSendRequest, now_ms: i64) -> StoreResult<AcceptOutcome>;
    async fn get_request(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<RequestRecord>>;

    // delivery control (see `sql::control`)
    /// Cancels the request's messages not in flight (Failed, reason `Canceled`) and
    /// completes it when none is in flight; idempotent.
    async fn cancel_request(&self, tenant: &str, id: &RecordId, now_ms: i64) -> StoreResult<CancelOutcome>;
    // deletes (see `sql::deletes`)
    async fn delete_channel(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome>;
    async fn delete_definition(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome>;
    async fn delete_end_user(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome>;
    // declared records (see `sql::declared`)
    async fn mark_declared(&self, kind: DeclaredKind, records: &[(String, RecordId)]) -> StoreResult<()>;
    async fn list_declared(&self, kind: DeclaredKind) -> StoreResult<Vec<(String, RecordId)>>;
    async fn unmark_declared(&self, kind: DeclaredKind, id: &RecordId) -> StoreResult<()>;
    /// Grants up to `want` send slots of the channel within `horizon_ms` (the rule of
    /// `domain::rates`), from state every replica shares; `None` when the store serves a
    /// single process (SQLite), whose dispatcher keeps that state in memory.
    async fn reserve_send_slots(
        &self,
        channel: &RecordId,
        rate: f64,
        want: u32,
        now_ms: i64,
        horizon_ms: i64,
    ) -> StoreResult<Option<crate::domain::rates::SlotGrant>>;
    /// Holds every replica's slots of the channel until `until_ms` (a no-op where the
    /// limit is in process).
    async fn pause_channel(&self, channel: &RecordId, until_ms: i64) -> StoreResult<()>;
    /// Queues again up to `limit` messages that failed for a transient reason (see
    /// `sql::control::redrive`); `None` when the scope's request is not the tenant's.
    async fn redrive(
        &self,
        tenant: &str,
        scope: &RedriveScope,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Option<Redriven>>;
}

/// What deleting a record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// The tenant has no such record.
    NotFound,
    /// Still needed; the message names what needs it.
    Referenced(String),
}

/// The kinds of record the config file declares (see `sql::declared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredKind {
    Channel,
    Definition,
    EndUser,
}

impl DeclaredKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclaredKind::Channel => "channel",
            DeclaredKind::Definition => "definition",
            DeclaredKind::EndUser => "end_user",
        }
    }
}

/// Which failed messages a redrive takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveScope {
    Request(RecordId),
    /// The channel's messages that failed in `[from_ms, before_ms)`.
    Channel {
        channel: RecordId,
        from_ms: i64,
        before_ms: i64,
    },
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    pub messages: u64,
    /// Their requests, each once, in id order.
    pub requests: Vec<RecordId>,
    /// More messages matched than the limit.
    pub has_more: bool,
}

/// What starting a message's send came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Recorded: the provider may be called.
    Sending,
    /// The claim's lease is gone (another replica owns the request, or it completed).
    LeaseLost,
    /// The message is already final (cancelled): nothing to send.
    Final,
}

/// What cancelling a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The tenant has no such request.
    NotFound,
    /// It had completed before any cancel: nothing changed.
    AlreadyCompleted,
    /// Cancelled now, or by an earlier cancel.
    Canceled,
}

/// What a claim asks for (see `Store::claim_requests`).
#[derive(Debug, Clone)]
pub struct ClaimAsk {
    pub lease: String,
    pub now_ms: i64,
    pub lease_ms: i64,
    pub max_in_progress: u32,
    pub batch: u32,
    pub prestart: Prestart,
}

/// Which due messages of a claimed request begin their send in the claim's own
/// transaction — `InProgress`, the attempt counted, `sent_by` the claim's lease, exactly
/// what `Store::start_message` writes — so the dispatcher calls the provider for them
/// at once, without a write round of its own first. The dispatcher picks the messages it
/// would send right away (the gate lets them through, their channel has no rate limit
/// or pause, a provider is configured); at most `per_request` of each request, in
/// recipient order, the first wave of its per-request concurrency. A cancel locks the
/// same request row as the claim: a message begun by a claim is in flight for the
/// cancel, as one begun by `start_message` is.
#[derive(Clone)]
pub struct Prestart {
    pub per_request: usize,
    pub eligible: Eligible,
}

/// Whether the dispatcher would send a due message of this work at once (`Prestart`).
pub type Eligible = Arc<dyn Fn(&Work, &WorkItem) -> bool + Send + Sync>;

impl std::fmt::Debug for Prestart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prestart").field("per_request", &self.per_request).finish_non_exhaustive()
    }
}

/// A request claimed for delivery.
#[derive(Debug, Clone)]
pub struct Claim {
    pub request_id: RecordId,
    pub tenant: String,
    /// The lease id this claim holds (`<owner>#<n>`, unique per claim call): every later
    /// write for the request is fenced on it, so not even the same process can act on a
    /// claim it has lost and taken again.
    pub lease: String,
    /// When the request was accepted (queue wait = claim time − this).
    pub accepted_ms: i64,
    /// The request was `InProgress` under an expired lease: another owner died or
    /// stalled and this claim took it over.
    pub takeover: bool,
    /// The trace context stored at accept (`traceparent`, then `\n` and `tracestate`
    /// when there is one), so the delivery span can join the caller's trace.
    pub trace_context: Option<String>,
    /// The request's work, read in the claim's transaction; a turn that must start
    /// again (the database failed mid-way) reads it afresh (`Store::load_work`).
    pub work: Option<Box<Work>>,
}

/// A claimed request and its due messages, with what the gate and the renderer need.
#[derive(Debug, Clone)]
pub struct Work {
    pub request_id: RecordId,
    pub tenant: String,
    /// The claim's lease id (see `Claim::lease`).
    pub lease: String,
    /// When the work was read: a session change after this makes held messages due again.
    pub loaded_at_ms: i64,
    pub definition_name: String,
    /// The component as it is now (`None` if it was removed).
    pub definition: Option<MessageDefinition>,
    pub parameters_json: String,
    pub enforce_consent: bool,
    pub consent_type: ConsentType,
    pub subscription_id: Option<RecordId>,
    pub allowed_session_status: AllowedSessionStatus,
    pub trace_context: Option<String>,
    pub items: Vec<WorkItem>,
}

/// One due message.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub identifier: String,
    pub platform_key: String,
    pub end_user: EndUser,
    pub channel: Channel,
    pub session_status: Option<SessionStatus>,
    pub subscription_consent: Option<SubscriptionConsentStatus>,
    /// Attempts counted before this turn (a message begun by the claim counted its
    /// attempt already: `started`).
    pub attempts: u32,
    pub waiting_since_ms: Option<i64>,
    /// Its send began in the claim's transaction (`Prestart`): it is `InProgress` with
    /// this turn's attempt counted, and the dispatcher sends it without a start of its
    /// own. Read again outside a claim (`Store::load_work`), it is `false`.
    pub started: bool,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageOutcome {
    Success {
        provider_message_id: Option<String>,
    },
    Failed {
        reason: FailureReason,
    },
    /// A transient failure: try again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Held by session gating until the session changes or `recheck_at_ms`.
    /// `loaded_at_ms` is when the session state behind the decision was read; if the
    /// session changed since, the message is due again at once rather than at `recheck_at_ms`.
    Wait {
        reason: WaitReason,
        since_ms: i64,
        recheck_at_ms: i64,
        loaded_at_ms: i64,
    },
    /// A message begun by its claim (`WorkItem::started`) that was not sent after all
    /// (the process is stopping): due again at once, its attempt given back.
    NotSent,
}

/// A connection pool's use at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: u32,
    pub in_use: u32,
}

impl PoolStats {
    /// A pool's use now (either backend's).
    pub fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats { idle, in_use: size - idle }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Pending requests (due now or later).
    pub pending: u64,
    /// Requests `InProgress`, whether their lease holds or expired.
    pub in_progress: u64,
    pub completed: u64,
    /// `InProgress` requests whose lease holds (what the in-progress limit counts).
    pub leased: u64,
    /// `InProgress` requests whose lease expired and that no replica took over yet.
    pub expired_leases: u64,
    /// When the oldest due `Pending` request became due (the head of the ready queue,
    /// or a delayed request due but not yet moved to it); `None` when none is due.
    pub oldest_due_ms: Option<i64>,
    /// Messages held by session gating, by waiting reason.
    pub held_by_reason: Vec<(WaitReason, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_tell_down_from_busy_from_a_bad_statement() {
        for code in ["8", "10", "266", "13", "14", "522"] {
            assert_eq!(classify_sqlite(Some(code)), Failure::Down, "{code}");
        }
        for code in ["5", "6", "517", "262"] {
            assert_eq!(classify_sqlite(Some(code)), Failure::Busy, "{code}");
        }
        for code in ["1", "19", "2067", "787"] {
            assert_eq!(classify_sqlite(Some(code)), Failure::Statement, "{code}");
        }
        for code in ["08006", "57P01", "57P03", "53100", "25006"] {
            assert_eq!(classify_pg(Some(code)), Failure::Down, "{code}");
        }
        for code in ["57014", "55P03", "53300", "40001", "40P01"] {
            assert_eq!(classify_pg(Some(code)), Failure::Busy, "{code}");
        }
        for code in ["23505", "22021", "42P01"] {
            assert_eq!(classify_pg(Some(code)), Failure::Statement, "{code}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Failure::Busy);
        assert_eq!(classify(&sqlx::Error::PoolClosed), Failure::Down);
    }
}
