//! Reading the delivery queue, both backends: claiming due requests and reading their
//! work set-wise (three statements for however many requests and messages), inside the
//! claim's transaction, so a claimed request's turn starts without a read of its own.
//!
//! The queue: a `Pending` request is either ready (`waiting = FALSE`: claimable now,
//! kept in accept order by a partial index) or delayed until `due_ms` (a retry, a
//! session wait). A claim first moves the delayed requests that have come due to the
//! ready queue — touching only those, through an index on `due_ms` — so however many
//! requests wait, a claim reads only what it takes. The ready queue has one range per
//! priority lane (the index is keyed by lane, then accept order); expired leases are
//! taken over first, then the lane policy (`domain::schedule::split_room`) shares the
//! free slots between the lanes, FIFO within each (original accept time, then insertion
//! order).

use crate::store::sql::lite::row;
use std::collections::HashMap;

use super::counts::Deltas;
use super::{Conn, Dialect, Sql, delivery};
use crate::domain::RecordId;
use crate::domain::model::Priority;
use crate::domain::schedule::split_room;
use crate::store::rows::{DefinitionRow, parse_pick};
use crate::store::*;

row! {
    struct ClaimRow {
        id: String,
        tenant: String,
        accepted_ms: i64,
        /// Was `InProgress` (under an expired lease) before this claim.
        takeover: bool,
        trace_context: Option<String>,
    }
}

/// Claims up to `ask.batch` requests under the lease id `ask.lease`, inside the caller's
/// write transaction (SQLite: the single writer's; PostgreSQL: one holding the claim
/// lock, so count-and-claim is atomic across replicas). Never lets the number of leased
/// `InProgress` requests exceed `ask.max_in_progress`. Reads the claimed requests' work
/// and begins the sends `ask.prestart` picks (`begin_first_wave`). The requests it
/// moves are added to `deltas`, for the transaction's update of the queue counts.
pub async fn claim<C: Conn>(conn: &mut C, ask: &ClaimAsk, deltas: &mut Deltas) -> StoreResult<Vec<Claim>> {
    let (lease, now, lease_ms) = (ask.lease.as_str(), ask.now_ms, ask.lease_ms);
    let (max_in_progress, batch) = (ask.max_in_progress, ask.batch);
    let d = conn.dialect();
    let mut promote = Sql::new(
        d,
        "UPDATE send_requests SET waiting = FALSE WHERE status = 'Pending' AND waiting = TRUE AND due_ms <= ",
    );
    promote.bind(now);
    conn.execute(promote).await?;

    // The leases held now, and the lane policy's state, in one statement.
    let mut leased = Sql::new(
        d,
        "SELECT CAST(COUNT(*) AS BIGINT), (SELECT transactional_streak FROM queue_lanes WHERE id = 0) \
         FROM send_requests WHERE status = 'InProgress' AND locked_until_ms > ",
    );
    leased.bind(now);
    let (leased, streak): (i64, Option<i64>) = conn.fetch_one(leased).await?;
    let streak = streak.unwrap_or(0);
    let room = (i64::from(max_in_progress) - leased).clamp(0, i64::from(batch));
    if room == 0 {
        return Ok(Vec::new());
    }
    let skip_locked = if d == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let seq = d.seq();
    let mut expired = Sql::new(
        d,
        "SELECT id, tenant, accepted_ms, TRUE AS takeover, trace_context FROM send_requests \
             WHERE status = 'InProgress' AND locked_until_ms <= ",
    );
    expired.bind(now).push(&format!(" ORDER BY accepted_ms, {seq} LIMIT ")).bind(room).push(skip_locked);
    let mut picked: Vec<ClaimRow> = conn.fetch_all(expired).await?;
    // Takeovers first (they were claimed before); the rest of the room is shared between
    // the lanes by the lane policy (`domain::schedule`), each lane read from the head of
    // its range of the ready index, FIFO.
    let left = room - picked.len() as i64;
    if left > 0 {
        let lane = |priority: Priority| {
            let mut ready = Sql::new(
                d,
                "SELECT id, tenant, accepted_ms, FALSE AS takeover, trace_context FROM send_requests \
                     WHERE status = 'Pending' AND waiting = FALSE AND lane = ",
            );
            ready
                .bind(priority.lane())
                .push(&format!(" ORDER BY accepted_ms, {seq} LIMIT "))
                .bind(left)
                .push(skip_locked);
            ready
        };
        let mut transactional: Vec<ClaimRow> = conn.fetch_all(lane(Priority::Transactional)).await?;
        let mut bulk: Vec<ClaimRow> = conn.fetch_all(lane(Priority::Bulk)).await?;
        let split = split_room(left as usize, transactional.len(), bulk.len(), streak);
        transactional.truncate(split.transactional);
        bulk.truncate(split.bulk);
        picked.extend(transactional);
        picked.extend(bulk);
        if split.streak != streak {
            let mut keep = Sql::new(d, "UPDATE queue_lanes SET transactional_streak = ");
            keep.bind(split.streak).push(" WHERE id = 0");
            conn.execute(keep).await?;
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let mut update = Sql::new(d, "UPDATE send_requests SET status = 'InProgress', locked_by = ");
    update.bind(lease).push(", locked_until_ms = ").bind(now + lease_ms).push(", updated_ms = ").bind(now);
    update.push(" WHERE ").in_list("id", picked.iter().map(|c| c.id.clone()).collect());
    conn.execute(update).await?;
    let fresh = picked.iter().filter(|c| !c.takeover).count() as i64;
    deltas.moved(RequestStatus::Pending, RequestStatus::InProgress, fresh);
    let mut claims: Vec<Claim> = picked
        .into_iter()
        .map(|c| Claim {
            request_id: RecordId::from_trusted(c.id),
            tenant: c.tenant,
            lease: lease.to_owned(),
            accepted_ms: c.accepted_ms,
            takeover: c.takeover,
            trace_context: c.trace_context,
            work: None,
        })
        .collect();
    // A request whose stored rows do not read back keeps `work: None`: its turn reads
    // it again and fails alone, as it would without the claim's read; the other
    // requests of the claim go ahead.
    let works = load_works(conn, &claims, now).await?;
    for (claim, work) in claims.iter_mut().zip(works) {
        match work {
            Ok(work) => claim.work = Some(Box::new(work)),
            Err(e) => {
                tracing::warn!(request_id = %claim.request_id, error = %e, "a claimed request's work does not read back")
            }
        }
    }
    begin_first_wave(conn, &mut claims, &ask.prestart, lease, now).await?;
    Ok(claims)
}

/// Begins, in the claim's transaction, the sends `prestart` picks: at most
/// `per_request` of each claimed request's due messages, in recipient order, become
/// `InProgress` with their attempt counted and the claim's lease as `sent_by` — the
/// write `Store::start_message` makes (`delivery::begin_sends`) — in one statement for
/// the whole claim. The
/// request rows are the claim's (locked by it on PostgreSQL, by the single writer on
/// SQLite), so no cancel comes between the read and this write.
async fn begin_first_wave<C: Conn>(
    conn: &mut C,
    claims: &mut [Claim],
    prestart: &Prestart,
    lease: &str,
    now: i64,
) -> StoreResult<()> {
    if prestart.per_request == 0 {
        return Ok(());
    }
    let mut picked: Vec<String> = Vec::new();
    for work in claims.iter().filter_map(|c| c.work.as_deref()) {
        picked.extend(
            work.items
                .iter()
                .filter(|item| (prestart.eligible)(work, item))
                .take(prestart.per_request)
                .map(|item| item.identifier.clone()),
        );
    }
    if picked.is_empty() {
        return Ok(());
    }
    let n = picked.len();
    let begun = delivery::begin_sends(conn, picked, vec![lease.to_owned(); n], vec![now; n]).await?;
    for work in claims.iter_mut().filter_map(|c| c.work.as_deref_mut()) {
        for item in work.items.iter_mut() {
            item.started = begun.contains(&item.identifier);
        }
    }
    Ok(())
}

row! {
    struct WorkRow {
        id: String,
        definition_id: String,
        definition_name: String,
        parameters: String,
        enforce_consent: bool,
        consent_type: String,
        subscription_id: Option<String>,
        allowed_session_status: String,
        trace_context: Option<String>,
    }
}

row! {
    /// A due message with its end user, channel, latest session status and subscription
    /// consent, in one row.
    struct DueRow {
        request_id: String,
        identifier: String,
        end_user_id: String,
        platform_key: String,
        attempts: i64,
        waiting_since_ms: Option<i64>,
        end_user_name: String,
        consent_status: String,
        end_user_created_ms: i64,
        end_user_updated_ms: i64,
        channel_id: String,
        developer_name: String,
        master_label: String,
        message_type: String,
        channel_consent_type: String,
        provider: String,
        channel_platform_key: String,
        is_active: bool,
        rate_limit_per_second: f64,
        provider_options: String,
        channel_created_ms: i64,
        channel_updated_ms: i64,
        session_status: Option<String>,
        subscription_consent: Option<String>,
    }
}

impl DueRow {
    fn into_item(self) -> StoreResult<WorkItem> {
        let consent_status: ConsentStatus = parse_pick("end_users.consent_status", &self.consent_status)?;
        let required: ChannelConsentLevel = parse_pick("channels.consent_type", &self.channel_consent_type)?;
        let message_type: MessageType = parse_pick("channels.message_type", &self.message_type)?;
        let channel_id = RecordId::from_trusted(self.channel_id);
        Ok(WorkItem {
            end_user: EndUser {
                id: RecordId::from_trusted(self.end_user_id),
                channel_id: channel_id.clone(),
                platform_key: self.platform_key.clone(),
                name: self.end_user_name,
                consent_status,
                message_type,
                is_fully_opted_in: consent_status.meets(required),
                created_ms: self.end_user_created_ms,
                updated_ms: self.end_user_updated_ms,
            },
            channel: Channel {
                id: channel_id,
                developer_name: self.developer_name,
                master_label: self.master_label,
                message_type,
                consent_type: required,
                provider: parse_pick("channels.provider", &self.provider)?,
                messaging_platform_key: self.channel_platform_key,
                is_active: self.is_active,
                rate_limit_per_second: self.rate_limit_per_second,
                provider_options: serde_json::from_str(&self.provider_options)
                    .map_err(|e| StoreError::Corrupt(format!("channels.provider_options: {e}")))?,
                created_ms: self.channel_created_ms,
                updated_ms: self.channel_updated_ms,
            },
            session_status: self.session_status.map(|s| parse_pick("sessions.status", &s)).transpose()?,
            subscription_consent: self
                .subscription_consent
                .map(|s| parse_pick("subscription_consents.status", &s))
                .transpose()?,
            identifier: self.identifier,
            platform_key: self.platform_key,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            waiting_since_ms: self.waiting_since_ms,
            started: false,
        })
    }
}

/// What a claimed request needs to send its due messages (see `load_works`).
pub async fn load_work<C: Conn>(conn: &mut C, claim: &Claim, now: i64) -> StoreResult<Work> {
    let mut works = load_works(conn, std::slice::from_ref(claim), now).await?;
    works.pop().unwrap_or_else(|| Err(StoreError::Corrupt(format!("send_requests: no row {}", claim.request_id))))
}

/// What each claimed request needs to send its due messages, in the claims' order:
/// three statements however many requests and messages (the requests, their
/// components, and the due messages joined with their end users, channels, latest
/// session status and subscription consent). The outer error is the database's; an
/// inner one says that request's rows do not read back (`StoreError::Corrupt`), and
/// touches no other request.
pub async fn load_works<C: Conn>(conn: &mut C, claims: &[Claim], now: i64) -> StoreResult<Vec<StoreResult<Work>>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let d = conn.dialect();
    let ids: Vec<String> = claims.iter().map(|c| c.request_id.as_str().to_owned()).collect();
    let mut sql = Sql::new(
        d,
        "SELECT id, definition_id, definition_name, parameters, enforce_consent, consent_type, subscription_id, \
         allowed_session_status, trace_context FROM send_requests WHERE ",
    );
    sql.in_list("id", ids.clone());
    let mut rows: HashMap<String, WorkRow> =
        conn.fetch_all::<WorkRow>(sql).await?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut definition_ids: Vec<String> = rows.values().map(|r| r.definition_id.clone()).collect();
    definition_ids.sort_unstable();
    definition_ids.dedup();
    let mut sql = Sql::new(d, "SELECT * FROM message_definitions WHERE ");
    sql.in_list("id", definition_ids);
    let definitions: HashMap<String, StoreResult<MessageDefinition>> = conn
        .fetch_all::<DefinitionRow>(sql)
        .await?
        .into_iter()
        .map(|row| (row.id().to_owned(), row.into_record()))
        .collect();
    let mut sql = Sql::new(
        d,
        &format!(
            "SELECT m.request_id, m.identifier, m.end_user_id, m.platform_key, m.attempts, m.waiting_since_ms, \
             e.name AS end_user_name, e.consent_status, e.created_ms AS end_user_created_ms, \
             e.updated_ms AS end_user_updated_ms, c.id AS channel_id, c.developer_name, c.master_label, \
             c.message_type, c.consent_type AS channel_consent_type, c.provider, \
             c.platform_key AS channel_platform_key, c.is_active, c.rate_limit_per_second, c.provider_options, \
             c.created_ms AS channel_created_ms, c.updated_ms AS channel_updated_ms, \
             (SELECT s.status FROM sessions s WHERE s.tenant = m.tenant AND s.end_user_id = m.end_user_id \
              ORDER BY s.created_ms DESC, s.{} DESC LIMIT 1) AS session_status, \
             (SELECT sc.status FROM subscription_consents sc WHERE sc.subscription_id = r.subscription_id \
              AND sc.end_user_id = m.end_user_id) AS subscription_consent \
             FROM messages m JOIN send_requests r ON r.id = m.request_id \
             JOIN end_users e ON e.id = m.end_user_id JOIN channels c ON c.id = e.channel_id \
             WHERE m.status IN ('Pending', 'InProgress') \
             AND (m.next_attempt_ms IS NULL OR m.next_attempt_ms <= ",
            d.seq()
        ),
    );
    sql.bind(now).push(") AND ").in_list("m.request_id", ids).push(" ORDER BY m.request_id, m.position");
    let mut due: HashMap<String, StoreResult<Vec<WorkItem>>> = HashMap::new();
    for row in conn.fetch_all::<DueRow>(sql).await? {
        let items = due.entry(row.request_id.clone()).or_insert_with(|| Ok(Vec::new()));
        if let Ok(list) = items {
            match row.into_item() {
                Ok(item) => list.push(item),
                Err(e) => *items = Err(e),
            }
        }
    }
    Ok(claims
        .iter()
        .map(|claim| {
            let row = rows
                .remove(claim.request_id.as_str())
                .ok_or_else(|| StoreError::Corrupt(format!("send_requests: no row {}", claim.request_id)))?;
            let definition = definitions.get(&row.definition_id).cloned().transpose()?;
            let items = due.remove(claim.request_id.as_str()).unwrap_or(Ok(Vec::new()))?;
            Ok(Work {
                request_id: claim.request_id.clone(),
                tenant: claim.tenant.clone(),
                lease: claim.lease.clone(),
                loaded_at_ms: now,
                definition_name: row.definition_name,
                definition,
                parameters_json: row.parameters,
                enforce_consent: row.enforce_consent,
                consent_type: parse_pick("send_requests.consent_type", &row.consent_type)?,
                subscription_id: row.subscription_id.map(RecordId::from_trusted),
                allowed_session_status: parse_pick(
                    "send_requests.allowed_session_status",
                    &row.allowed_session_status,
                )?,
                trace_context: row.trace_context,
                items,
            })
        })
        .collect())
}
