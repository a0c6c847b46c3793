//! The group-commit writer: one task owns one database connection and records whatever
//! writes are waiting — accepts, and the dispatcher's message starts, outcomes, lease
//! renewals, claim ends and (SQLite) claims — in ONE transaction and one commit (one
//! fsync / WAL flush), so durability is shared instead of paid per write. Within a batch
//! the kinds are applied in that order, so a claim sees the slots the batch's finishes
//! freed, and a finish sees the outcomes queued before it. On SQLite a single writer does
//! every write of the process (SQLite has one write lock; other writes borrow the
//! writer's connection between batches, `Loan`); on PostgreSQL each replica runs one for
//! accepts and one for the dispatcher, on connections of their own, so neither waits for
//! a pool connection behind callers (its claims take a lock of their own, `postgres`).
//!
//! An answer is sent only after `COMMIT` succeeded on a live connection. If the batch
//! fails because the database is unavailable, every write in it is refused UNAVAILABLE
//! and the connection is replaced (its transaction state is in doubt); busy (a timeout),
//! every write is refused for the callers to retry; if it fails for another reason, each
//! write is retried in a transaction of its own, so one bad write never takes the others
//! with it. Transactions are plain `BEGIN`/`COMMIT` statements on
//! the writer's own connection (no savepoints), so nothing can half-commit.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::health::Health;
use super::sql::Conn;
use super::sql::accept::{self, AcceptItem};
use super::sql::counts::{self, Deltas};
use super::sql::delivery::{self, DeliveryWrites, Finish, Outcome, Renewal, Start};
use super::sql::queue;
use super::sql::receipts::{self, Receipt, ReceiptOutcome};
use crate::domain::model::RequestStatus;
use crate::domain::send::NewSendRequest;
use crate::store::{AcceptOutcome, Claim, ClaimAsk, Started, StoreError, StoreResult};

/// Opens a fresh connection for the writer.
pub type Connect<C> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = StoreResult<C>> + Send>> + Send + Sync>;

type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// One write for the writer.
pub enum Op<C> {
    Accept {
        tenant: String,
        request: Box<NewSendRequest>,
        now_ms: i64,
        reply: Reply<AcceptOutcome>,
    },
    Start(Start, Reply<Started>),
    Outcome(Outcome, Reply<bool>),
    Renew(Renewal, Reply<Vec<bool>>),
    Finish(Finish, Reply<Option<RequestStatus>>),
    /// Claims due requests (see `sql::queue::claim`), after the batch's finishes.
    Claim(ClaimAsk, Reply<Vec<Claim>>),
    /// Delivery receipts from providers (one call's worth), answered in order.
    Receipts(Vec<Receipt>, Reply<Vec<ReceiptOutcome>>),
    /// Lends the connection, between batches, for a transaction of the borrower's own.
    Loan(oneshot::Sender<Loaned<C>>),
}

/// A write the writer has taken: awaiting it gives its result once its batch committed
/// (or was refused). Writes are taken in the order they were queued, so a write queued
/// after this one is applied in the same transaction or a later one.
pub struct Queued<T> {
    answer: oneshot::Receiver<StoreResult<T>>,
    /// Told what the write came to (an unavailable database is probed at once).
    health: Option<Arc<Health>>,
}

impl<T> Queued<T> {
    /// Reports the answer to `health` too.
    pub fn watched(mut self, health: &Arc<Health>) -> Self {
        self.health = Some(health.clone());
        self
    }
}

impl<T> Future for Queued<T> {
    type Output = StoreResult<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.answer).poll(cx).map(|answer| {
            let result = answer.map_err(|_| closed()).and_then(|r| r);
            match &this.health {
                Some(health) => health.observe(result),
                None => result,
            }
        })
    }
}

/// The sending side, cheap to clone.
pub struct Writer<C> {
    ops: mpsc::Sender<Op<C>>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer { ops: self.ops.clone() }
    }
}

fn thread_failed(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Arc::new(sqlx::Error::Io(e)))
}

fn closed() -> StoreError {
    StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed))
}

impl<C: Conn + 'static> Writer<C> {
    /// Starts a writer on `conn`; `connect` replaces the connection when it is in doubt.
    /// `shard` names the writer's queue-count rows.
    pub fn start(conn: C, connect: Connect<C>, max_batch: usize, shard: i64) -> Self {
        let (writer, run) = Self::prepare(conn, connect, max_batch, shard);
        tokio::spawn(run);
        writer
    }

    /// The sending side and the writer's loop, not yet running.
    fn prepare(
        conn: C,
        connect: Connect<C>,
        max_batch: usize,
        shard: i64,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let max_batch = max_batch.max(1);
        let (ops, rx) = mpsc::channel(max_batch * 4);
        (Writer { ops }, run_until_closed(Some(conn), connect, rx, max_batch, shard))
    }

    /// Starts a writer on a thread of its own, named `name`, with a runtime of its own:
    /// for a connection whose statements block (SQLite's, `sql::lite`), so the batch's
    /// work never holds up the shared runtime. The thread ends when the last `Writer`
    /// handle is dropped.
    pub fn start_on_thread(
        name: &str,
        conn: C,
        connect: Connect<C>,
        max_batch: usize,
        shard: i64,
    ) -> StoreResult<Self> {
        let (writer, run) = Self::prepare(conn, connect, max_batch, shard);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(thread_failed)?;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || runtime.block_on(run))
            .map_err(thread_failed)?;
        Ok(writer)
    }

    async fn send(&self, op: Op<C>) -> StoreResult<()> {
        self.ops.send(op).await.map_err(|_| closed())
    }

    /// Queues the write; its answer comes later.
    async fn queue<T>(&self, op: impl FnOnce(Reply<T>) -> Op<C>) -> StoreResult<Queued<T>> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply)).await?;
        Ok(Queued { answer, health: None })
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op<C>) -> StoreResult<T> {
        self.queue(op).await?.await
    }

    pub async fn accept(&self, tenant: &str, request: NewSendRequest, now_ms: i64) -> StoreResult<AcceptOutcome> {
        self.ask(|reply| Op::Accept { tenant: tenant.to_owned(), request: Box::new(request), now_ms, reply }).await
    }

    pub async fn start_message(&self, start: Start) -> StoreResult<Started> {
        self.ask(|reply| Op::Start(start, reply)).await
    }

    pub async fn record_outcome(&self, outcome: Outcome) -> StoreResult<Queued<bool>> {
        self.queue(|reply| Op::Outcome(outcome, reply)).await
    }

    pub async fn renew(&self, renewal: Renewal) -> StoreResult<Vec<bool>> {
        self.ask(|reply| Op::Renew(renewal, reply)).await
    }

    pub async fn finish(&self, finish: Finish) -> StoreResult<Queued<Option<RequestStatus>>> {
        self.queue(|reply| Op::Finish(finish, reply)).await
    }

    pub async fn claim(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>> {
        self.ask(|reply| Op::Claim(ask, reply)).await
    }

    pub async fn record_receipts(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>> {
        self.ask(|reply| Op::Receipts(receipts, reply)).await
    }

    /// The writer's connection, lent between batches (SQLite: every other write).
    pub async fn borrow(&self) -> StoreResult<Loaned<C>> {
        let (reply, loan) = oneshot::channel();
        self.send(Op::Loan(reply)).await?;
        loan.await.map_err(|_| closed())
    }
}

/// The writer's connection while lent; it goes back to the writer when dropped, which
/// rolls back whatever transaction the borrower left open.
pub struct Loaned<C> {
    conn: Option<C>,
    back: Option<oneshot::Sender<C>>,
}

impl<C> Deref for Loaned<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("a lent connection until dropped")
    }
}

impl<C> DerefMut for Loaned<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("a lent connection until dropped")
    }
}

impl<C> Drop for Loaned<C> {
    fn drop(&mut self) {
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            let _ = back.send(conn);
        }
    }
}

async fn run_until_closed<C: Conn + 'static>(
    mut conn: Option<C>,
    connect: Connect<C>,
    mut rx: mpsc::Receiver<Op<C>>,
    max_batch: usize,
    shard: i64,
) {
    let mut batch: Vec<Op<C>> = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        if conn.is_none() {
            match connect().await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "the database writer cannot reconnect")
                }
            }
        }
        let mut loans = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                Op::Loan(reply) => loans.push(reply),
                other => writes.push(other),
            }
        }
        if !writes.is_empty() {
            match conn.as_mut() {
                Some(c) => {
                    if !commit(c, writes, shard).await {
                        // The connection's transaction state is in doubt: replace it.
                        conn = None;
                    }
                }
                None => refuse(writes, &closed()),
            }
        }
        for loan in loans {
            let Some(lent) = conn.take() else {
                // No connection: the borrower hears that the store is closed.
                drop(loan);
                continue;
            };
            let (back, returned) = oneshot::channel();
            if let Err(mut unused) = loan.send(Loaned { conn: Some(lent), back: Some(back) }) {
                // The borrower went away before taking it: keep the connection.
                conn = unused.conn.take();
                continue;
            }
            if let Ok(mut c) = returned.await {
                // Whatever the borrower left open is rolled back; an error here only
                // says there was no transaction.
                let _ = c.run("ROLLBACK").await;
                conn = Some(c);
            }
        }
    }
}

/// The writes of one batch, split by kind.
struct Batch<C> {
    accepts: Vec<(String, Box<NewSendRequest>, i64, Reply<AcceptOutcome>)>,
    starts: Vec<(Start, Reply<Started>)>,
    outcomes: Vec<(Outcome, Reply<bool>)>,
    renewals: Vec<(Renewal, Reply<Vec<bool>>)>,
    finishes: Vec<(Finish, Reply<Option<RequestStatus>>)>,
    claims: Vec<(ClaimAsk, Reply<Vec<Claim>>)>,
    receipts: Vec<(Vec<Receipt>, Reply<Vec<ReceiptOutcome>>)>,
    _conn: std::marker::PhantomData<fn() -> C>,
}

impl<C> Batch<C> {
    fn split(ops: Vec<Op<C>>) -> Self {
        let mut b = Batch {
            accepts: Vec::new(),
            starts: Vec::new(),
            outcomes: Vec::new(),
            renewals: Vec::new(),
            finishes: Vec::new(),
            claims: Vec::new(),
            receipts: Vec::new(),
            _conn: std::marker::PhantomData,
        };
        for op in ops {
            match op {
                Op::Accept { tenant, request, now_ms, reply } => b.accepts.push((tenant, request, now_ms, reply)),
                Op::Start(s, reply) => b.starts.push((s, reply)),
                Op::Outcome(o, reply) => b.outcomes.push((o, reply)),
                Op::Renew(r, reply) => b.renewals.push((r, reply)),
                Op::Finish(f, reply) => b.finishes.push((f, reply)),
                Op::Claim(c, reply) => b.claims.push((c, reply)),
                Op::Receipts(r, reply) => b.receipts.push((r, reply)),
                Op::Loan(_) => unreachable!("loans are served apart"),
            }
        }
        b
    }

    fn into_ops(self) -> Vec<Op<C>> {
        let mut ops = Vec::new();
        ops.extend(self.accepts.into_iter().map(|(tenant, request, now_ms, reply)| Op::Accept {
            tenant,
            request,
            now_ms,
            reply,
        }));
        ops.extend(self.starts.into_iter().map(|(s, r)| Op::Start(s, r)));
        ops.extend(self.outcomes.into_iter().map(|(o, r)| Op::Outcome(o, r)));
        ops.extend(self.renewals.into_iter().map(|(x, r)| Op::Renew(x, r)));
        ops.extend(self.finishes.into_iter().map(|(f, r)| Op::Finish(f, r)));
        ops.extend(self.claims.into_iter().map(|(c, r)| Op::Claim(c, r)));
        ops.extend(self.receipts.into_iter().map(|(x, r)| Op::Receipts(x, r)));
        ops
    }
}

/// What one transaction's writes came to, before the commit.
struct Written {
    accepts: Vec<AcceptOutcome>,
    delivery: delivery::DeliveryResults,
    claims: Vec<Vec<Claim>>,
    receipts: Vec<ReceiptOutcome>,
}

async fn write_all<C: Conn>(conn: &mut C, b: &Batch<C>, shard: i64) -> StoreResult<Written> {
    let items: Vec<AcceptItem<'_>> =
        b.accepts.iter().map(|(tenant, request, now_ms, _)| AcceptItem { tenant, request, now_ms: *now_ms }).collect();
    // Every status change of the batch, for one update of the queue counts at its end.
    let mut deltas = Deltas::default();
    let accepts = if items.is_empty() { Vec::new() } else { accept::write_batch(conn, &items, &mut deltas).await? };
    let writes = DeliveryWrites {
        starts: b.starts.iter().map(|(s, _)| s).collect(),
        outcomes: b.outcomes.iter().map(|(o, _)| o).collect(),
        renewals: b.renewals.iter().map(|(r, _)| r).collect(),
        finishes: b.finishes.iter().map(|(f, _)| f).collect(),
    };
    let delivery = delivery::apply(conn, &writes, &mut deltas).await?;
    // After the finishes: a claim takes the slots they freed.
    let mut claims = Vec::with_capacity(b.claims.len());
    for (c, _) in &b.claims {
        claims.push(queue::claim(conn, c, &mut deltas).await?);
    }
    counts::apply(conn, shard, &deltas).await?;
    // After the outcomes, so a receipt finds the provider id recorded in the same batch.
    let all: Vec<&Receipt> = b.receipts.iter().flat_map(|(r, _)| r).collect();
    let receipts = receipts::record(conn, &all).await?;
    Ok(Written { accepts, delivery, claims, receipts })
}

/// `BEGIN` (the connection's dialect decides how), the writes, `COMMIT`.
async fn transaction<C: Conn>(conn: &mut C, b: &Batch<C>, shard: i64) -> StoreResult<Written> {
    let begin = match conn.dialect() {
        super::sql::Dialect::Sqlite => "BEGIN IMMEDIATE",
        super::sql::Dialect::Postgres => "BEGIN",
    };
    conn.run(begin).await?;
    match write_all(conn, b, shard).await {
        Ok(written) => {
            conn.run("COMMIT").await?;
            Ok(written)
        }
        Err(e) => {
            let _ = conn.run("ROLLBACK").await;
            Err(e)
        }
    }
}

fn answer<C>(b: Batch<C>, written: Written) {
    for ((.., reply), outcome) in b.accepts.into_iter().zip(written.accepts) {
        // The caller may have gone (a cancelled call); what committed stays committed.
        let _ = reply.send(Ok(outcome));
    }
    for ((_, reply), started) in b.starts.into_iter().zip(written.delivery.starts) {
        let _ = reply.send(Ok(started));
    }
    for ((_, reply), kept) in b.outcomes.into_iter().zip(written.delivery.outcomes) {
        let _ = reply.send(Ok(kept));
    }
    for ((_, reply), renewed) in b.renewals.into_iter().zip(written.delivery.renewals) {
        let _ = reply.send(Ok(renewed));
    }
    for ((_, reply), status) in b.finishes.into_iter().zip(written.delivery.finishes) {
        let _ = reply.send(Ok(status));
    }
    for ((_, reply), claimed) in b.claims.into_iter().zip(written.claims) {
        let _ = reply.send(Ok(claimed));
    }
    let mut outcomes = written.receipts.into_iter();
    for (receipts, reply) in b.receipts {
        let _ = reply.send(Ok(outcomes.by_ref().take(receipts.len()).collect()));
    }
}

fn refuse<C>(ops: Vec<Op<C>>, e: &StoreError) {
    for op in ops {
        match op {
            Op::Accept { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Start(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Outcome(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Renew(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Finish(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Claim(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Receipts(_, reply) => drop(reply.send(Err(e.clone()))),
            Op::Loan(_) => {}
        }
    }
}

/// Commits a batch and answers every write in it. Returns false when the connection is
/// in doubt and must be replaced.
async fn commit<C: Conn>(conn: &mut C, ops: Vec<Op<C>>, shard: i64) -> bool {
    let batch = Batch::split(ops);
    match transaction(conn, &batch, shard).await {
        Ok(written) => {
            answer(batch, written);
            true
        }
        Err(e @ StoreError::Unavailable(_)) => {
            refuse(batch.into_ops(), &e);
            false
        }
        // Busy (a statement or lock timeout): the transaction was rolled back; the
        // connection is fine, the writes are refused for the callers to retry.
        Err(e @ StoreError::Busy(_)) => {
            refuse(batch.into_ops(), &e);
            true
        }
        Err(e) => {
            let ops = batch.into_ops();
            if ops.len() == 1 {
                refuse(ops, &e);
                return true;
            }
            tracing::warn!(error = %crate::telemetry::error_chain(&e), writes = ops.len(), "a batched write failed; writing one by one");
            let mut healthy = true;
            for op in ops {
                if healthy {
                    healthy = Box::pin(commit(conn, vec![op], shard)).await;
                } else {
                    refuse(vec![op], &closed());
                }
            }
            healthy
        }
    }
}
