//! The one `Store` implementation, over a `Backend` that says how to get connections and
//! transactions and how to claim: everything else is the shared SQL of `sql`. SQLite
//! and PostgreSQL differ only in their `Backend` (`sqlite`, `postgres`).

use std::ops::DerefMut;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::health::{Health, PROBE_EVERY};
use super::sql::Sql;
use super::sql::delivery::{self, Finish, Outcome, Renewal, Start};
use super::sql::{Conn, admin, control, declared, deletes, outbox, queue, rates, requests, tokens};
use super::writer::Writer;
use super::*;
use crate::domain::events::EventEndpoint;

/// What differs between the backends.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Conn: Conn + 'static;
    /// A pooled connection for reads.
    type Read: DerefMut<Target = Self::Conn> + Send;
    /// The connection writes run on (SQLite: the writer's own, not the readers' kind).
    type WriteConn: Conn + 'static;
    /// A connection inside a write transaction.
    type Write: DerefMut<Target = Self::WriteConn> + Send;

    /// A connection for the doors' reads.
    async fn read(&self) -> StoreResult<Self::Read>;
    /// A connection for the dispatcher's reads, from a pool of its own, so delivery is
    /// never starved by callers.
    async fn read_for_dispatch(&self) -> StoreResult<Self::Read>;
    /// Begins a write transaction (SQLite: on the single writer's connection).
    async fn begin_write(&self) -> StoreResult<Self::Write>;
    async fn commit(&self, tx: Self::Write) -> StoreResult<()>;
    /// Begins a short write transaction of the dispatcher's own (its rate-limit slots),
    /// off the doors' pool where the backend has one.
    async fn begin_dispatch_write(&self) -> StoreResult<Self::Write> {
        self.begin_write().await
    }
    /// Claims atomically across replicas (see `sql::queue::claim`): on SQLite as a write
    /// of the group-commit batch, on PostgreSQL under the claim lock.
    async fn claim(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>>;
    /// The group-commit writer for accepts.
    fn accept_writer(&self) -> &Writer<Self::WriteConn>;
    /// The group-commit writer for the dispatcher's writes.
    fn delivery_writer(&self) -> &Writer<Self::WriteConn>;
    /// Whether several processes share this database, so per-channel rate limits are
    /// kept in it (PostgreSQL) rather than in the process (SQLite).
    fn shares_rate_limits(&self) -> bool {
        false
    }
    /// Whether a claim is a write of the dispatcher's group commit (SQLite) rather than
    /// a transaction of its own under the claim lock (PostgreSQL).
    fn claims_share_commits(&self) -> bool {
        false
    }
    /// The queue-count rows that writes outside the writers (purge, release) update.
    fn shard(&self) -> i64;
    fn pool_stats(&self) -> PoolStats;

    /// Whether the database answers (the health probe), on a fresh connection where the
    /// backend has a server to connect to, so a dead server is found at once.
    async fn probe(&self) -> StoreResult<()> {
        let mut conn = self.read().await?;
        let sql = Sql::new(conn.dialect(), "SELECT CAST(1 AS BIGINT)");
        let _: (i64,) = conn.fetch_one(sql).await?;
        Ok(())
    }
}

pub struct SqlStore<B: Backend> {
    backend: Arc<B>,
    /// Up or down, as last seen: while down, calls fail at once (see `health`).
    health: Arc<Health>,
}

impl<B: Backend> SqlStore<B> {
    /// The store over `backend`, with its health probe running.
    pub fn new(backend: B) -> Self {
        let backend = Arc::new(backend);
        let health = Arc::new(Health::default());
        tokio::spawn(run_probe_until_dropped(Arc::downgrade(&backend), health.clone()));
        SqlStore { backend, health }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A read connection, unless the database is known down.
    pub(crate) async fn read_conn(&self) -> StoreResult<B::Read> {
        self.health.check()?;
        self.health.observe(self.backend.read().await)
    }

    /// A write transaction, unless the database is known down.
    pub(crate) async fn begin_write(&self) -> StoreResult<B::Write> {
        self.health.check()?;
        self.health.observe(self.backend.begin_write().await)
    }

    /// Notes what a call came to (an unavailable database is down from now on).
    pub(crate) fn seen<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        self.health.observe(result)
    }
}

/// When a call found the database unavailable, asks it at once; while it does not
/// answer, asks every `PROBE_EVERY` (see `health`). Ends when the store is dropped.
async fn run_probe_until_dropped<B: Backend>(backend: Weak<B>, health: Arc<Health>) {
    loop {
        tokio::select! {
            _ = health.suspected() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                if backend.strong_count() == 0 {
                    return;
                }
                continue;
            }
        }
        loop {
            let Some(backend) = backend.upgrade() else { return };
            let answered = matches!(tokio::time::timeout(Duration::from_secs(2), backend.probe()).await, Ok(Ok(())));
            drop(backend);
            health.set_down(!answered);
            if answered {
                break;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}

/// Runs `$body` with `$c` bound to a connection in a write transaction, and commits.
macro_rules! write {
    ($self:ident, |$c:ident| $body:expr) => {{
        let mut tx = $self.begin_write().await?;
        let result = {
            let $c = &mut *tx;
            $self.seen($body.await)?
        };
        $self.seen($self.backend.commit(tx).await)?;
        Ok(result)
    }};
}

/// Runs `$body` with `$c` bound to a pooled read connection.
macro_rules! read {
    ($self:ident, |$c:ident| $body:expr) => {{
        let mut conn = $self.read_conn().await?;
        let $c = &mut *conn;
        $self.seen($body.await)
    }};
}

/// A call through one of the group-commit writers, unless the database is known down.
macro_rules! through_writer {
    ($self:ident, $call:expr) => {{
        $self.health.check()?;
        $self.seen($call.await)
    }};
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn upsert_token(&self, grant: &TokenGrant, now_ms: i64) -> StoreResult<bool> {
        write!(self, |c| tokens::upsert(c, grant, now_ms))
    }

    async fn load_tokens(&self, now_ms: i64) -> StoreResult<Vec<ActiveToken>> {
        read!(self, |c| tokens::load_active(c, now_ms))
    }

    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        read!(self, |c| tokens::list(c, tenant))
    }

    async fn revoke_token(&self, tenant: &str, sha256: &str, now_ms: i64) -> StoreResult<Option<TokenRecord>> {
        write!(self, |c| tokens::revoke(c, tenant, sha256, now_ms))
    }

    async fn remove_tokens_except(&self, source: TokenSource, keep: &[String]) -> StoreResult<u64> {
        write!(self, |c| tokens::remove_except(c, source, keep))
    }

    async fn upsert_channel(&self, tenant: &str, u: ChannelUpsert, now_ms: i64) -> StoreResult<(Channel, bool)> {
        write!(self, |c| admin::upsert_channel(c, tenant, u, now_ms))
    }

    async fn get_channel(&self, tenant: &str, key: &Key) -> StoreResult<Option<Channel>> {
        read!(self, |c| admin::get_channel(c, tenant, key))
    }

    async fn list_channels(&self, tenant: &str, after: Option<&RecordId>, limit: u32) -> StoreResult<Page<Channel>> {
        read!(self, |c| admin::list_channels(c, tenant, after, limit))
    }

    async fn find_channel_owner(&self, id: &RecordId) -> StoreResult<Option<(String, Channel)>> {
        read!(self, |c| admin::find_channel_owner(c, id))
    }

    async fn upsert_definition(
        &self,
        tenant: &str,
        d: DefinitionUpsert,
        now_ms: i64,
    ) -> StoreResult<(MessageDefinition, bool)> {
        write!(self, |c| admin::upsert_definition(c, tenant, d, now_ms))
    }

    async fn get_definition(&self, tenant: &str, key: &Key) -> StoreResult<Option<MessageDefinition>> {
        read!(self, |c| admin::get_definition(c, tenant, key))
    }

    async fn list_definitions(
        &self,
        tenant: &str,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<MessageDefinition>> {
        read!(self, |c| admin::list_definitions(c, tenant, after, limit))
    }

    async fn upsert_end_users(
        &self,
        tenant: &str,
        users: Vec<EndUserUpsert>,
        now_ms: i64,
    ) -> StoreResult<Vec<EndUser>> {
        write!(self, |c| admin::upsert_end_users(c, tenant, users, now_ms))
    }

    async fn find_end_users(&self, tenant: &str, ids: &[RecordId]) -> StoreResult<Vec<EndUser>> {
        read!(self, |c| admin::find_end_users(c, tenant, ids))
    }

    async fn list_end_users(
        &self,
        tenant: &str,
        channel: Option<&RecordId>,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<EndUser>> {
        read!(self, |c| admin::list_end_users(c, tenant, channel, after, limit))
    }

    async fn set_session_status(
        &self,
        tenant: &str,
        end_user: &RecordId,
        status: SessionStatus,
        now_ms: i64,
    ) -> StoreResult<Option<Session>> {
        write!(self, |c| admin::set_session_status(c, tenant, end_user, status, now_ms))
    }

    async fn upsert_subscription(
        &self,
        tenant: &str,
        s: SubscriptionUpsert,
        now_ms: i64,
    ) -> StoreResult<(Subscription, bool)> {
        write!(self, |c| admin::upsert_subscription(c, tenant, s, now_ms))
    }

    async fn get_subscription(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<Subscription>> {
        read!(self, |c| admin::get_subscription(c, tenant, id))
    }

    async fn set_subscription_consent(
        &self,
        tenant: &str,
        subscription: &RecordId,
        end_users: &[RecordId],
        status: SubscriptionConsentStatus,
        now_ms: i64,
    ) -> StoreResult<u32> {
        write!(self, |c| admin::set_subscription_consent(c, tenant, subscription, end_users, status, now_ms))
    }

    async fn claim_requests(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>> {
        through_writer!(self, self.backend.claim(ask))
    }

    fn claims_in_flight(&self) -> usize {
        if self.backend.claims_share_commits() { 3 } else { 1 }
    }

    async fn load_work(&self, claim: &Claim, now_ms: i64) -> StoreResult<Work> {
        self.health.check()?;
        let mut conn = self.seen(self.backend.read_for_dispatch().await)?;
        self.seen(queue::load_work(&mut *conn, claim, now_ms).await)
    }

    async fn renew_leases(&self, leases: &[(String, RecordId)], now_ms: i64, until_ms: i64) -> StoreResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let renewal = Renewal { leases: leases.to_vec(), now_ms, until_ms };
        through_writer!(self, self.backend.delivery_writer().renew(renewal))
    }

    async fn start_message(
        &self,
        owner: &str,
        request: &RecordId,
        identifier: &str,
        now_ms: i64,
    ) -> StoreResult<Started> {
        let start =
            Start { lease: owner.to_owned(), request: request.clone(), identifier: identifier.to_owned(), now_ms };
        through_writer!(self, self.backend.delivery_writer().start_message(start))
    }

    async fn record_outcome(
        &self,
        owner: &str,
        request: &RecordId,
        identifier: &str,
        outcome: &MessageOutcome,
        now_ms: i64,
    ) -> StoreResult<Queued<bool>> {
        let outcome = Outcome {
            lease: owner.to_owned(),
            request: request.clone(),
            identifier: identifier.to_owned(),
            outcome: outcome.clone(),
            now_ms,
        };
        Ok(through_writer!(self, self.backend.delivery_writer().record_outcome(outcome))?.watched(&self.health))
    }

    async fn finish_request(
        &self,
        owner: &str,
        request: &RecordId,
        now_ms: i64,
    ) -> StoreResult<Queued<Option<RequestStatus>>> {
        let finish = Finish { lease: owner.to_owned(), request: request.clone(), now_ms };
        Ok(through_writer!(self, self.backend.delivery_writer().finish(finish))?.watched(&self.health))
    }

    async fn release_leases(&self, owner: &str, now_ms: i64) -> StoreResult<u64> {
        let shard = self.backend.shard();
        write!(self, |c| delivery::release_leases(c, owner, now_ms, shard))
    }

    async fn queue_stats(&self, now_ms: i64) -> StoreResult<QueueStats> {
        read!(self, |c| requests::queue_stats(c, now_ms))
    }

    fn pool_stats(&self) -> PoolStats {
        self.backend.pool_stats()
    }

    fn is_available(&self) -> bool {
        !self.health.is_down()
    }

    async fn record_receipts(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        through_writer!(self, self.backend.delivery_writer().record_receipts(receipts))
    }

    async fn create_event_endpoint(
        &self,
        tenant: &str,
        endpoint: &EventEndpoint,
        secret: &str,
    ) -> StoreResult<Option<EventEndpoint>> {
        write!(self, |c| outbox::create_endpoint(c, tenant, endpoint, secret))
    }

    async fn declare_event_endpoint(
        &self,
        tenant: &str,
        endpoint: &EventEndpoint,
        secret: &str,
    ) -> StoreResult<EventEndpoint> {
        write!(self, |c| outbox::declare_endpoint(c, tenant, endpoint, secret))
    }

    async fn list_event_endpoints(&self, tenant: &str) -> StoreResult<Vec<EventEndpoint>> {
        read!(self, |c| outbox::list_endpoints(c, tenant))
    }

    async fn update_event_endpoint(
        &self,
        tenant: &str,
        id: &str,
        change: &EndpointChange,
        now_ms: i64,
    ) -> StoreResult<Option<EventEndpoint>> {
        write!(self, |c| outbox::update_endpoint(c, tenant, id, change, now_ms))
    }

    async fn delete_event_endpoint(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        write!(self, |c| outbox::delete_endpoint(c, tenant, id))
    }

    async fn replay_events(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<u64> {
        write!(self, |c| outbox::replay(c, tenant, endpoint, since_ms, until_ms, now_ms))
    }

    async fn claim_event_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        // A read first: most polls find nothing, and must not take the write lock.
        if !read!(self, |c| outbox::any_due(c, now_ms))? {
            return Ok(Vec::new());
        }
        write!(self, |c| outbox::claim(c, now_ms, lease_until_ms, limit))
    }

    async fn record_event_attempts(
        &self,
        results: &[AttemptResult],
        disable_before_ms: i64,
    ) -> StoreResult<Vec<Disabled>> {
        write!(self, |c| outbox::record_attempts(c, results, disable_before_ms))
    }

    async fn purge_completed(&self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        let shard = self.backend.shard();
        write!(self, |c| requests::purge_completed(c, before_ms, limit, shard))
    }

    async fn accept(&self, tenant: &str, request: NewSendRequest, now_ms: i64) -> StoreResult<AcceptOutcome> {
        through_writer!(self, self.backend.accept_writer().accept(tenant, request, now_ms))
    }

    async fn get_request(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<RequestRecord>> {
        read!(self, |c| requests::get_request(c, tenant, id))
    }

    async fn cancel_request(&self, tenant: &str, id: &RecordId, now_ms: i64) -> StoreResult<CancelOutcome> {
        let shard = self.backend.shard();
        write!(self, |c| control::cancel_request(c, tenant, id, now_ms, shard))
    }

    async fn delete_channel(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
        write!(self, |c| deletes::delete_channel(c, tenant, id))
    }

    async fn delete_definition(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
        write!(self, |c| deletes::delete_definition(c, tenant, id))
    }

    async fn delete_end_user(&self, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
        write!(self, |c| deletes::delete_end_user(c, tenant, id))
    }

    async fn mark_declared(&self, kind: DeclaredKind, records: &[(String, RecordId)]) -> StoreResult<()> {
        write!(self, |c| declared::mark(c, kind, records))
    }

    async fn list_declared(&self, kind: DeclaredKind) -> StoreResult<Vec<(String, RecordId)>> {
        read!(self, |c| declared::list(c, kind))
    }

    async fn unmark_declared(&self, kind: DeclaredKind, id: &RecordId) -> StoreResult<()> {
        write!(self, |c| declared::unmark(c, kind, id))
    }

    async fn reserve_send_slots(
        &self,
        channel: &RecordId,
        rate: f64,
        want: u32,
        now_ms: i64,
        horizon_ms: i64,
    ) -> StoreResult<Option<crate::domain::rates::SlotGrant>> {
        if !self.backend.shares_rate_limits() {
            return Ok(None);
        }
        self.health.check()?;
        let mut tx = self.seen(self.backend.begin_dispatch_write().await)?;
        let grant = self.seen(rates::reserve(&mut *tx, channel, rate, want, now_ms, horizon_ms).await)?;
        self.seen(self.backend.commit(tx).await)?;
        Ok(Some(grant))
    }

    async fn pause_channel(&self, channel: &RecordId, until_ms: i64) -> StoreResult<()> {
        if !self.backend.shares_rate_limits() {
            return Ok(());
        }
        self.health.check()?;
        let mut tx = self.seen(self.backend.begin_dispatch_write().await)?;
        self.seen(rates::pause(&mut *tx, channel, until_ms).await)?;
        self.seen(self.backend.commit(tx).await)
    }

    async fn redrive(
        &self,
        tenant: &str,
        scope: &RedriveScope,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Option<Redriven>> {
        let shard = self.backend.shard();
        write!(self, |c| control::redrive(c, tenant, scope, now_ms, limit, shard))
    }
}
