//! The dispatcher's writes, both backends — message starts, outcomes, lease renewals
//! and the end of a claim — applied set-wise, many claims' writes in one transaction
//! (the backends' writers group them); and giving leases back, waking held messages.
//!
//! Fencing: every write for a claimed request names the claim's lease id and is applied
//! only while that lease holds (`locked_by` = lease, `locked_until_ms` in the future),
//! checked on rows locked for the transaction, so a replica that lost its lease can no
//! longer change the request. No transaction is held across a provider call.
//!
//! Cancelling (`control`) locks the same request row, so a start is either before the
//! cancel (the message is in flight and finishes) or after it (the message is final and
//! the start is refused, `Started::Final`): nothing is sent after a cancel is answered.
//! An in-flight message of a cancelled request that would be retried or held fails
//! `Canceled` instead.

use std::collections::{HashMap, HashSet};

use super::counts::{self, Deltas};
use super::outbox::{self, NewEvent};
use super::{Conn, Rows, Sql};
use crate::domain::RecordId;
use crate::domain::reason::FailureReason;
use crate::store::*;

/// A message's send begins (it is `InProgress`, one more attempt).
#[derive(Debug, Clone)]
pub struct Start {
    pub lease: String,
    pub request: RecordId,
    pub identifier: String,
    pub now_ms: i64,
}

/// What happened to a message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub lease: String,
    pub request: RecordId,
    pub identifier: String,
    pub outcome: MessageOutcome,
    pub now_ms: i64,
}

/// The end of a claim.
#[derive(Debug, Clone)]
pub struct Finish {
    pub lease: String,
    pub request: RecordId,
    pub now_ms: i64,
}

/// Extends the leases listed, if still held at `now_ms`, to `until_ms`.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub leases: Vec<(String, RecordId)>,
    pub now_ms: i64,
    pub until_ms: i64,
}

/// The dispatcher's writes of one batch.
#[derive(Debug, Default)]
pub struct DeliveryWrites<'a> {
    pub starts: Vec<&'a Start>,
    pub outcomes: Vec<&'a Outcome>,
    pub renewals: Vec<&'a Renewal>,
    pub finishes: Vec<&'a Finish>,
}

/// What each write came to, in the order given.
#[derive(Debug, Default)]
pub struct DeliveryResults {
    /// What each start came to.
    pub starts: Vec<Started>,
    /// Whether each outcome was recorded (false: the lease was lost).
    pub outcomes: Vec<bool>,
    /// For each renewal, whether each lease was extended.
    pub renewals: Vec<Vec<bool>>,
    /// Each claim's end: `Completed`, `Pending` (waiting), or `None` when the lease was lost.
    pub finishes: Vec<Option<RequestStatus>>,
}

/// A lease held on a request, as the batch found it.
struct HeldLease {
    lease: String,
    valid_until_ms: i64,
    canceled: bool,
    /// For the status events written with the changes.
    tenant: String,
    /// The tenant has an event endpoint (else its events are not written at all).
    listened: bool,
}

/// The leases held at this moment on the requests a batch writes to, their rows locked
/// until the transaction ends (PostgreSQL), so no takeover — and no cancel — slips in
/// before the writes.
async fn held_leases<C: Conn>(conn: &mut C, requests: Vec<String>) -> StoreResult<HashMap<String, HeldLease>> {
    if requests.is_empty() {
        return Ok(HashMap::new());
    }
    let d = conn.dialect();
    let mut sql = Sql::new(
        d,
        "SELECT id, locked_by, locked_until_ms, canceled_ms, tenant, \
         EXISTS (SELECT 1 FROM event_endpoints e WHERE e.tenant = send_requests.tenant) AS listened \
         FROM send_requests WHERE status = 'InProgress' AND ",
    );
    sql.in_list("id", requests).push(" ORDER BY id").push(d.for_update());
    type Row = (String, Option<String>, Option<i64>, Option<i64>, String, bool);
    let rows: Vec<Row> = conn.fetch_all(sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, by, until, canceled, tenant, listened)| {
            let held = HeldLease { lease: by?, valid_until_ms: until?, canceled: canceled.is_some(), tenant, listened };
            Some((id, held))
        })
        .collect())
}

/// Applies a batch of the dispatcher's writes in the caller's transaction: starts, then
/// outcomes, then renewals, then the ends of claims (a claim's writes arrive in that
/// order). Each write counts only if its lease holds at its own `now_ms`.
/// The status changes it makes are added to `deltas`, for the batch's one update of the
/// queue counts.
pub async fn apply<C: Conn>(
    conn: &mut C,
    writes: &DeliveryWrites<'_>,
    deltas: &mut Deltas,
) -> StoreResult<DeliveryResults> {
    let d = conn.dialect();
    let mut requests: Vec<String> = writes
        .starts
        .iter()
        .map(|s| s.request.as_str().to_owned())
        .chain(writes.outcomes.iter().map(|o| o.request.as_str().to_owned()))
        .chain(writes.finishes.iter().map(|f| f.request.as_str().to_owned()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    requests.sort();
    let held = held_leases(conn, requests).await?;
    let holds = |lease: &str, request: &RecordId, now: i64| {
        held.get(request.as_str()).is_some_and(|h| h.lease == lease && h.valid_until_ms > now)
    };
    let canceled = |request: &RecordId| held.get(request.as_str()).is_some_and(|h| h.canceled);
    let mut touched: HashMap<String, i64> = HashMap::new();
    let mut touch = |request: &RecordId, now: i64| {
        let t = touched.entry(request.as_str().to_owned()).or_insert(now);
        *t = (*t).max(now);
    };

    let fenced: Vec<bool> = writes.starts.iter().map(|s| holds(&s.lease, &s.request, s.now_ms)).collect();
    let starts: Vec<&&Start> = writes.starts.iter().zip(&fenced).filter(|(_, k)| **k).map(|(s, _)| s).collect();
    let mut sending: HashSet<String> = HashSet::new();
    if !starts.is_empty() {
        // The request rows are locked (`held_leases`), so no cancel changes a message
        // between the lease check and the update.
        sending = begin_sends(
            conn,
            starts.iter().map(|s| s.identifier.clone()).collect(),
            starts.iter().map(|s| s.lease.clone()).collect(),
            starts.iter().map(|s| s.now_ms).collect(),
        )
        .await?;
        for s in &starts {
            touch(&s.request, s.now_ms);
        }
    }
    let started: Vec<Started> = writes
        .starts
        .iter()
        .zip(&fenced)
        .map(|(s, held)| match (*held, sending.contains(&s.identifier)) {
            (false, _) => Started::LeaseLost,
            (true, true) => Started::Sending,
            (true, false) => Started::Final,
        })
        .collect();

    let kept: Vec<bool> = writes.outcomes.iter().map(|o| holds(&o.lease, &o.request, o.now_ms)).collect();
    // A cancelled request's messages end now: what would be retried or held fails.
    let cancelled: Vec<Outcome> = writes
        .outcomes
        .iter()
        .zip(&kept)
        .filter(|(o, k)| **k && canceled(&o.request))
        .filter(|(o, _)| {
            matches!(o.outcome, MessageOutcome::Retry { .. } | MessageOutcome::Wait { .. } | MessageOutcome::NotSent)
        })
        .map(|(o, _)| Outcome { outcome: MessageOutcome::Failed { reason: FailureReason::Canceled }, ..(*o).clone() })
        .collect();
    let outcomes: Vec<&Outcome> = writes
        .outcomes
        .iter()
        .zip(&kept)
        .filter(|(_, k)| **k)
        .map(|(o, _)| cancelled.iter().find(|c| c.identifier == o.identifier).unwrap_or(o))
        .collect();
    let outcomes: Vec<&&Outcome> = outcomes.iter().collect();
    // Status events, written with the changes they report.
    let tenant_of = |request: &RecordId| held.get(request.as_str()).map(|h| h.tenant.clone()).unwrap_or_default();
    let mut events = Vec::new();
    if !outcomes.is_empty() {
        for o in &outcomes {
            if let MessageOutcome::Failed { reason } = &o.outcome {
                events.push(NewEvent::message_failed(
                    &tenant_of(&o.request),
                    o.request.as_str(),
                    &o.identifier,
                    *reason,
                    o.now_ms,
                ));
            }
        }
        record_outcomes(conn, &outcomes).await?;
        for o in &outcomes {
            touch(&o.request, o.now_ms);
        }
    }

    let mut renewals = Vec::with_capacity(writes.renewals.len());
    for renewal in &writes.renewals {
        renewals.push(renew(conn, renewal).await?);
    }

    // A request whose claim ends in this batch gets its `updated_ms` from the end (it
    // is queued after the claim's outcomes, so it is the later): no touch of its own.
    let finishing: Vec<&&Finish> = writes.finishes.iter().filter(|f| holds(&f.lease, &f.request, f.now_ms)).collect();
    for f in &finishing {
        touched.remove(f.request.as_str());
    }
    if !touched.is_empty() {
        let rows = Rows::new()
            .text("id", touched.keys().cloned().collect())
            .int("now_ms", touched.values().copied().collect());
        let mut sql = Sql::new(d, "UPDATE send_requests AS r SET updated_ms = v.now_ms FROM ");
        sql.rows(rows).push(" AS v WHERE r.id = v.id");
        conn.execute(sql).await?;
    }

    let ended = finish(conn, &finishing, deltas).await?;
    for f in &finishing {
        if ended.get(f.request.as_str()) == Some(&RequestStatus::Completed) {
            events.push(NewEvent::request_completed(&tenant_of(&f.request), f.request.as_str(), f.now_ms));
        }
    }
    // Only a tenant with an event endpoint keeps events (the outbox insert checks it
    // too): a batch whose tenants have none writes no outbox statement at all.
    let listened: HashSet<&str> = held.values().filter(|h| h.listened).map(|h| h.tenant.as_str()).collect();
    events.retain(|e| listened.contains(e.tenant.as_str()));
    outbox::enqueue(conn, events).await?;
    let finishes = writes
        .finishes
        .iter()
        .map(|f| if holds(&f.lease, &f.request, f.now_ms) { ended.get(f.request.as_str()).copied() } else { None })
        .collect();
    Ok(DeliveryResults { starts: started, outcomes: kept, renewals, finishes })
}

/// Begins the sends of the messages named, in one statement: each is `InProgress`, its
/// attempt counted, sent by its lease as of its `now_ms`. A final message (cancelled) is
/// not started again: what comes back is what starts. The caller holds the messages'
/// request rows (a dispatcher batch after `held_leases`, or the claim that took them).
pub(super) async fn begin_sends<C: Conn>(
    conn: &mut C,
    identifiers: Vec<String>,
    leases: Vec<String>,
    now_ms: Vec<i64>,
) -> StoreResult<HashSet<String>> {
    let d = conn.dialect();
    let rows = Rows::new().text("identifier", identifiers).text("lease", leases).int("now_ms", now_ms);
    let mut sql = Sql::new(
        d,
        "UPDATE messages AS m SET status = 'InProgress', attempts = m.attempts + 1, waiting_reason = NULL, \
         waiting_since_ms = NULL, sent_by = v.lease, updated_ms = v.now_ms FROM ",
    );
    // SQLite's RETURNING names the updated table's columns bare (and may not name its
    // alias); PostgreSQL must qualify, `v` has an `identifier` too.
    let returning = match d {
        super::Dialect::Sqlite => "identifier",
        super::Dialect::Postgres => "m.identifier",
    };
    sql.rows(rows)
        .push(" AS v WHERE m.identifier = v.identifier AND m.status IN ('Pending', 'InProgress') RETURNING ")
        .push(returning);
    Ok(conn.fetch_all::<(String,)>(sql).await?.into_iter().map(|(i,)| i).collect())
}

/// Records outcomes set-wise. A held message whose end user's session changed after
/// the work was read is due again at once: the change's wake-up found it not yet held.
async fn record_outcomes<C: Conn>(conn: &mut C, outcomes: &[&&Outcome]) -> StoreResult<()> {
    let n = outcomes.len();
    let (mut status, mut reason, mut waiting_reason) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut next, mut since, mut keep_since) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut pmid, mut set_pmid, mut error) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut set_error, mut is_wait, mut loaded_at) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    // 1 where the outcome gives back the attempt its claim counted (`NotSent`).
    let unsent: Vec<i64> = outcomes.iter().map(|o| i64::from(o.outcome == MessageOutcome::NotSent)).collect();
    for o in outcomes {
        let (s, r, w, nx, si, keep, p, e, wait, loaded) = match &o.outcome {
            MessageOutcome::Success { provider_message_id } => {
                ("Success", None, None, None, None, false, Some(provider_message_id.clone()), None, false, 0)
            }
            MessageOutcome::Failed { reason } => {
                ("Failed", Some(reason.as_str().to_owned()), None, None, None, false, None, None, false, 0)
            }
            MessageOutcome::Retry { at_ms, error } => {
                ("Pending", None, None, Some(*at_ms), None, true, None, Some(error.clone()), false, 0)
            }
            MessageOutcome::Wait { reason, since_ms, recheck_at_ms, loaded_at_ms } => (
                "Pending",
                None,
                Some(reason.as_str().to_owned()),
                Some(*recheck_at_ms),
                Some(*since_ms),
                false,
                None,
                None,
                true,
                *loaded_at_ms,
            ),
            // Due again at once, as it was before its claim began it.
            MessageOutcome::NotSent => ("Pending", None, None, None, None, true, None, None, false, 0),
        };
        status.push(s.to_owned());
        reason.push(r);
        waiting_reason.push(w);
        next.push(nx);
        since.push(si);
        keep_since.push(keep);
        set_pmid.push(p.is_some());
        pmid.push(p.flatten());
        set_error.push(e.is_some());
        error.push(e);
        is_wait.push(wait);
        loaded_at.push(loaded);
    }
    let rows = Rows::new()
        .text("identifier", outcomes.iter().map(|o| o.identifier.clone()).collect())
        .text("status", status)
        .opt_text("reason", reason)
        .opt_text("waiting_reason", waiting_reason)
        .opt_int("next_attempt_ms", next)
        .opt_int("waiting_since_ms", since)
        .bool("keep_since", keep_since)
        .opt_text("provider_message_id", pmid)
        .bool("set_pmid", set_pmid)
        .opt_text("last_error", error)
        .bool("set_error", set_error)
        .bool("is_wait", is_wait)
        .int("loaded_at_ms", loaded_at)
        .int("unsent", unsent)
        .int("now_ms", outcomes.iter().map(|o| o.now_ms).collect());
    let mut sql = Sql::new(
        conn.dialect(),
        "UPDATE messages AS m SET status = v.status, reason = v.reason, waiting_reason = v.waiting_reason, \
         attempts = m.attempts - v.unsent, next_attempt_ms = CASE WHEN v.is_wait AND EXISTS (SELECT 1 FROM sessions s WHERE s.tenant = m.tenant \
         AND s.end_user_id = m.end_user_id AND s.updated_ms > v.loaded_at_ms) THEN v.now_ms \
         ELSE v.next_attempt_ms END, \
         waiting_since_ms = CASE WHEN v.keep_since THEN m.waiting_since_ms ELSE v.waiting_since_ms END, \
         provider_message_id = CASE WHEN v.set_pmid THEN v.provider_message_id ELSE m.provider_message_id END, \
         last_error = CASE WHEN v.set_error THEN v.last_error ELSE m.last_error END, updated_ms = v.now_ms, \
         delivery_state = CASE WHEN v.status = 'Success' THEN COALESCE(m.delivery_state, 'Sent') \
         ELSE m.delivery_state END, \
         sent_ms = CASE WHEN v.status = 'Success' THEN COALESCE(m.sent_ms, v.now_ms) ELSE m.sent_ms END FROM ",
    );
    sql.rows(rows).push(" AS v WHERE m.identifier = v.identifier");
    conn.execute(sql).await?;
    Ok(())
}

/// Extends the renewal's leases still held; whether each was, in its order.
async fn renew<C: Conn>(conn: &mut C, renewal: &Renewal) -> StoreResult<Vec<bool>> {
    if renewal.leases.is_empty() {
        return Ok(Vec::new());
    }
    let rows = Rows::new()
        .text("id", renewal.leases.iter().map(|(_, r)| r.as_str().to_owned()).collect())
        .text("lease", renewal.leases.iter().map(|(l, _)| l.clone()).collect());
    let mut sql = Sql::new(conn.dialect(), "UPDATE send_requests AS r SET locked_until_ms = ");
    sql.bind(renewal.until_ms).push(" FROM ");
    sql.rows(rows)
        .push(" AS v WHERE r.id = v.id AND r.locked_by = v.lease AND r.status = 'InProgress' AND r.locked_until_ms > ");
    sql.bind(renewal.now_ms).push(" RETURNING r.id");
    let renewed: HashSet<String> = conn.fetch_all::<(String,)>(sql).await?.into_iter().map(|(id,)| id).collect();
    Ok(renewal.leases.iter().map(|(_, r)| renewed.contains(r.as_str())).collect())
}

/// Ends claims whose leases hold: each request is `Completed` when every message is
/// final, else `Pending` again — ready at once if a message is due now, otherwise delayed
/// until its earliest message is due. A message left `InProgress` (its send was
/// interrupted) is due again.
async fn finish<C: Conn>(
    conn: &mut C,
    finishes: &[&&Finish],
    deltas: &mut Deltas,
) -> StoreResult<HashMap<String, RequestStatus>> {
    let mut ended = HashMap::new();
    if finishes.is_empty() {
        return Ok(ended);
    }
    let d = conn.dialect();
    let ids: Vec<String> = finishes.iter().map(|f| f.request.as_str().to_owned()).collect();
    let now_of: HashMap<&str, i64> = finishes.iter().map(|f| (f.request.as_str(), f.now_ms)).collect();
    // In one statement: a message left `InProgress` (its send was interrupted) is due
    // again; a message whose end user was deleted (accepted by a replica whose cache
    // still knew the end user) can never be sent, so it fails rather than keep its
    // request due.
    let gone = "NOT EXISTS (SELECT 1 FROM end_users e WHERE e.id = messages.end_user_id)";
    let mut reset = Sql::new(
        d,
        &format!(
            "UPDATE messages SET status = CASE WHEN {gone} THEN 'Failed' ELSE 'Pending' END, \
             reason = CASE WHEN {gone} THEN $1 ELSE reason END, \
             waiting_reason = CASE WHEN {gone} THEN NULL ELSE waiting_reason END, \
             next_attempt_ms = CASE WHEN status = 'InProgress' OR {gone} THEN NULL ELSE next_attempt_ms END \
             WHERE (status = 'InProgress' OR (status = 'Pending' AND {gone})) AND "
        ),
    );
    reset.arg(FailureReason::MessagingEndUserDeleted.as_str()).in_list("request_id", ids.clone());
    conn.execute(reset).await?;
    let mut open = Sql::new(
        d,
        "SELECT request_id, MIN(next_attempt_ms), CAST(SUM(CASE WHEN next_attempt_ms IS NULL THEN 1 ELSE 0 END) AS BIGINT) \
         FROM messages WHERE status NOT IN ('Success', 'Failed') AND ",
    );
    open.in_list("request_id", ids.clone()).push(" GROUP BY request_id");
    let open: HashMap<String, (Option<i64>, i64)> = conn
        .fetch_all::<(String, Option<i64>, i64)>(open)
        .await?
        .into_iter()
        .map(|(id, next, due_now)| (id, (next, due_now)))
        .collect();

    let (mut done, mut done_now) = (Vec::new(), Vec::new());
    let (mut again, mut due, mut waiting, mut again_now) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in &ids {
        let now = now_of[id.as_str()];
        match open.get(id) {
            None => {
                done.push(id.clone());
                done_now.push(now);
                ended.insert(id.clone(), RequestStatus::Completed);
            }
            Some((next, due_now)) => {
                let due_ms = if *due_now > 0 { now } else { next.unwrap_or(now) };
                again.push(id.clone());
                due.push(due_ms);
                waiting.push(due_ms > now);
                again_now.push(now);
                ended.insert(id.clone(), RequestStatus::Pending);
            }
        }
    }
    if !done.is_empty() {
        deltas.moved(RequestStatus::InProgress, RequestStatus::Completed, done.len() as i64);
        let rows = Rows::new().text("id", done).int("now_ms", done_now);
        let mut sql = Sql::new(
            d,
            "UPDATE send_requests AS r SET status = 'Completed', completed_ms = v.now_ms, updated_ms = v.now_ms, \
             locked_by = NULL, locked_until_ms = NULL FROM ",
        );
        sql.rows(rows).push(" AS v WHERE r.id = v.id");
        conn.execute(sql).await?;
    }
    if !again.is_empty() {
        deltas.moved(RequestStatus::InProgress, RequestStatus::Pending, again.len() as i64);
        let rows = Rows::new().text("id", again).int("due_ms", due).bool("waiting", waiting).int("now_ms", again_now);
        let mut sql = Sql::new(
            d,
            "UPDATE send_requests AS r SET status = 'Pending', due_ms = v.due_ms, waiting = v.waiting, \
             updated_ms = v.now_ms, locked_by = NULL, locked_until_ms = NULL FROM ",
        );
        sql.rows(rows).push(" AS v WHERE r.id = v.id");
        conn.execute(sql).await?;
    }
    Ok(ended)
}

/// Gives back every lease the process `owner` holds (lease ids `<owner>#…`): the
/// requests are ready again at once and their interrupted messages due.
pub async fn release_leases<C: Conn>(conn: &mut C, owner: &str, now: i64, shard: i64) -> StoreResult<u64> {
    let d = conn.dialect();
    let mut messages = Sql::new(
        d,
        "UPDATE messages SET status = 'Pending', next_attempt_ms = NULL WHERE status = 'InProgress' AND request_id IN \
         (SELECT id FROM send_requests WHERE status = 'InProgress' AND substr(locked_by, 1, length($1) + 1) = $1 || '#')",
    );
    messages.arg(owner);
    conn.execute(messages).await?;
    let mut requests = Sql::new(
        d,
        "UPDATE send_requests SET status = 'Pending', due_ms = $2, waiting = FALSE, locked_by = NULL, \
         locked_until_ms = NULL, updated_ms = $2 WHERE status = 'InProgress' \
         AND substr(locked_by, 1, length($1) + 1) = $1 || '#'",
    );
    requests.arg(owner).arg(now);
    let released = conn.execute(requests).await?;
    let mut deltas = Deltas::default();
    deltas.moved(RequestStatus::InProgress, RequestStatus::Pending, released as i64);
    counts::apply(conn, shard, &deltas).await?;
    Ok(released)
}

/// After an end user's session changed: their held messages are due now, and so are the
/// requests holding them (moved to the ready queue).
pub async fn wake_held_messages<C: Conn>(conn: &mut C, tenant: &str, end_user: &RecordId, now: i64) -> StoreResult<()> {
    let d = conn.dialect();
    let mut requests = Sql::new(
        d,
        &format!(
            "UPDATE send_requests SET due_ms = {}(due_ms, $1), waiting = FALSE WHERE status = 'Pending' AND id IN \
             (SELECT request_id FROM messages WHERE tenant = $2 AND end_user_id = $3 AND status = 'Pending' \
             AND waiting_reason IS NOT NULL)",
            d.least()
        ),
    );
    requests.arg(now).arg(tenant).arg(end_user.as_str());
    conn.execute(requests).await?;
    let mut messages = Sql::new(
        d,
        "UPDATE messages SET next_attempt_ms = $1 WHERE tenant = $2 AND end_user_id = $3 AND status = 'Pending' \
         AND waiting_reason IS NOT NULL",
    );
    messages.arg(now).arg(tenant).arg(end_user.as_str());
    conn.execute(messages).await?;
    Ok(())
}

/// An instant as RFC 3339 (UTC, milliseconds), as events show it.
pub fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let at = at.replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
