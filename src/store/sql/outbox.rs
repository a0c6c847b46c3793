//! The status-event outbox, both backends: events are enqueued in the transaction of
//! the state change they report (the writer's batch: outcomes, request ends, receipts),
//! with one delivery row per enabled endpoint that wants the type; the event task
//! claims due deliveries under a short lease — only the earliest pending one per
//! endpoint and request, so a request's events arrive in order — and records what each
//! attempt came to; endpoints failing for too long are disabled. Also the endpoints
//! themselves, and replays.

use crate::store::sql::lite::row;
use std::collections::HashMap;

use super::{Conn, Dialect, Rows, Sql};
use crate::domain::events::{EventEndpoint, EventType};
use crate::domain::reason::FailureReason;
use crate::store::{StoreError, StoreResult};

/// An event to enqueue with the state change it reports.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant: String,
    pub kind: EventType,
    pub request_id: String,
    /// The event's `data` object.
    pub data: serde_json::Value,
    pub now_ms: i64,
}

impl NewEvent {
    /// `message.failed`: `identifier` of `request` ended `Failed` with `reason` at `now_ms`.
    pub fn message_failed(
        tenant: &str,
        request: &str,
        identifier: &str,
        reason: FailureReason,
        now_ms: i64,
    ) -> NewEvent {
        NewEvent {
            tenant: tenant.to_owned(),
            kind: EventType::MessageFailed,
            request_id: request.to_owned(),
            data: serde_json::json!({
                "tenant": tenant,
                "request_id": request,
                "message_identifier": identifier,
                "status": "Failed",
                "reason": reason.as_str(),
                "occurred_at": super::delivery::rfc3339(now_ms),
            }),
            now_ms,
        }
    }

    /// `request.completed`: `request` became `Completed` at `now_ms`.
    pub fn request_completed(tenant: &str, request: &str, now_ms: i64) -> NewEvent {
        NewEvent {
            tenant: tenant.to_owned(),
            kind: EventType::RequestCompleted,
            request_id: request.to_owned(),
            data: serde_json::json!({
                "tenant": tenant,
                "request_id": request,
                "request_status": "Completed",
                "completed_date": super::delivery::rfc3339(now_ms),
            }),
            now_ms,
        }
    }
}

/// Writes `events` to the outbox, and a delivery for each enabled endpoint of their
/// tenant that takes their type. Tenants without endpoints write nothing.
pub async fn enqueue<C: Conn>(conn: &mut C, events: Vec<NewEvent>) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let d = conn.dialect();
    let ids: Vec<String> = events.iter().map(|_| format!("evt_{}", uuid::Uuid::now_v7().simple())).collect();
    let rows = Rows::new()
        .text("id", ids.clone())
        .text("tenant", events.iter().map(|e| e.tenant.clone()).collect())
        .text("event_type", events.iter().map(|e| e.kind.as_str().to_owned()).collect())
        .text("request_id", events.iter().map(|e| e.request_id.clone()).collect())
        .text("data", events.iter().map(|e| e.data.to_string()).collect())
        .int("created_ms", events.iter().map(|e| e.now_ms).collect());
    let mut insert = Sql::new(
        d,
        "INSERT INTO event_outbox (id, tenant, event_type, request_id, data, created_ms) \
         SELECT v.id, v.tenant, v.event_type, v.request_id, v.data, v.created_ms FROM ",
    );
    insert.rows(rows).push(" AS v WHERE EXISTS (SELECT 1 FROM event_endpoints e WHERE e.tenant = v.tenant)");
    if conn.execute(insert).await? == 0 {
        return Ok(());
    }
    let mut fan_out = Sql::new(
        d,
        &format!(
            "INSERT INTO event_deliveries (event_id, endpoint_id, request_id, event_seq, status, attempts, \
             next_attempt_ms, updated_ms) SELECT o.id, e.id, o.request_id, o.{}, 'Pending', 0, o.created_ms, \
             o.created_ms FROM event_outbox o JOIN event_endpoints e ON e.tenant = o.tenant AND e.enabled AND {} \
             WHERE ",
            d.seq(),
            TYPE_MATCHES
        ),
    );
    fan_out.in_list("o.id", ids);
    conn.execute(fan_out).await?;
    Ok(())
}

/// Whether endpoint `e` takes the type of event `o`.
const TYPE_MATCHES: &str = "(e.event_types = '' OR e.event_types LIKE '%,' || o.event_type || ',%')";

row! {
    /// A delivery claimed for sending.
    #[derive(Debug, Clone)]
    pub struct DueDelivery {
        pub event_id: String,
        pub endpoint_id: String,
        pub tenant: String,
        pub event_type: String,
        pub data: String,
        pub created_ms: i64,
        pub url: String,
        pub secret: String,
        /// Attempts before this one.
        pub attempts: i64,
    }
}

/// Leases up to `limit` due deliveries of enabled endpoints until `lease_until_ms`: for
/// each endpoint and request only the earliest pending event, in due order.
pub async fn claim<C: Conn>(
    conn: &mut C,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> StoreResult<Vec<DueDelivery>> {
    let d = conn.dialect();
    let lock = match d {
        Dialect::Postgres => " FOR UPDATE OF d2 SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let mut sql = Sql::new(
        d,
        &format!(
            "UPDATE event_deliveries SET locked_until_ms = $1 WHERE (event_id, endpoint_id) IN (\
             SELECT d2.event_id, d2.endpoint_id FROM event_deliveries d2 \
             JOIN event_endpoints e ON e.id = d2.endpoint_id AND e.enabled \
             WHERE d2.status = 'Pending' AND d2.next_attempt_ms <= $2 \
             AND (d2.locked_until_ms IS NULL OR d2.locked_until_ms <= $2) \
             AND NOT EXISTS (SELECT 1 FROM event_deliveries p WHERE p.endpoint_id = d2.endpoint_id \
             AND p.request_id = d2.request_id AND p.status = 'Pending' AND p.event_seq < d2.event_seq) \
             ORDER BY d2.next_attempt_ms, d2.event_seq LIMIT $3{lock}) RETURNING event_id, endpoint_id"
        ),
    );
    sql.arg(lease_until_ms).arg(now_ms).arg(i64::from(limit));
    let claimed: Vec<(String, String)> = conn.fetch_all(sql).await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let rows = Rows::new()
        .text("event_id", claimed.iter().map(|c| c.0.clone()).collect())
        .text("endpoint_id", claimed.iter().map(|c| c.1.clone()).collect());
    let mut load = Sql::new(
        d,
        "SELECT d.event_id, d.endpoint_id, o.tenant, o.event_type, o.data, o.created_ms, e.url, e.secret, d.attempts \
         FROM ",
    );
    load.rows(rows).push(
        " AS v JOIN event_deliveries d ON d.event_id = v.event_id AND d.endpoint_id = v.endpoint_id \
         JOIN event_outbox o ON o.id = d.event_id JOIN event_endpoints e ON e.id = d.endpoint_id \
         ORDER BY d.event_seq",
    );
    conn.fetch_all(load).await
}

/// Whether anything is due at `now_ms` (a read, before taking the write lock to claim).
pub async fn any_due<C: Conn>(conn: &mut C, now_ms: i64) -> StoreResult<bool> {
    let mut sql = Sql::new(
        conn.dialect(),
        "SELECT CAST(1 AS BIGINT) FROM event_deliveries WHERE status = 'Pending' AND next_attempt_ms <= ",
    );
    sql.bind(now_ms).push(" LIMIT 1");
    Ok(conn.fetch_optional::<(i64,)>(sql).await?.is_some())
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Try again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Retries ran out (or the endpoint refused for good); replayable.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub event_id: String,
    pub endpoint_id: String,
    pub attempt: Attempt,
    pub now_ms: i64,
}

row! {
    /// An endpoint disabled because it kept failing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Disabled {
        pub id: String,
        pub tenant: String,
        pub name: String,
    }
}

/// Records attempts, updates each endpoint's run of failures, and disables those
/// failing since before `disable_before_ms`.
pub async fn record_attempts<C: Conn>(
    conn: &mut C,
    results: &[AttemptResult],
    disable_before_ms: i64,
) -> StoreResult<Vec<Disabled>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let d = conn.dialect();
    let (status, next, error): (Vec<String>, Vec<Option<i64>>, Vec<Option<String>>) = results
        .iter()
        .map(|r| match &r.attempt {
            Attempt::Delivered => ("Delivered".to_owned(), None, None),
            Attempt::Retry { at_ms, error } => ("Pending".to_owned(), Some(*at_ms), Some(error.clone())),
            Attempt::Failed { error } => ("Failed".to_owned(), None, Some(error.clone())),
        })
        .fold((Vec::new(), Vec::new(), Vec::new()), |mut acc, (s, n, e)| {
            acc.0.push(s);
            acc.1.push(n);
            acc.2.push(e);
            acc
        });
    let rows = Rows::new()
        .text("event_id", results.iter().map(|r| r.event_id.clone()).collect())
        .text("endpoint_id", results.iter().map(|r| r.endpoint_id.clone()).collect())
        .text("status", status)
        .opt_int("next_attempt_ms", next)
        .opt_text("last_error", error)
        .int("now_ms", results.iter().map(|r| r.now_ms).collect());
    let mut sql = Sql::new(
        d,
        "UPDATE event_deliveries AS x SET status = v.status, attempts = x.attempts + 1, \
         next_attempt_ms = COALESCE(v.next_attempt_ms, x.next_attempt_ms), locked_until_ms = NULL, \
         last_error = v.last_error, updated_ms = v.now_ms FROM ",
    );
    sql.rows(rows).push(" AS v WHERE x.event_id = v.event_id AND x.endpoint_id = v.endpoint_id");
    conn.execute(sql).await?;

    // Each endpoint's last attempt in the batch says whether it is failing.
    let mut last: HashMap<&str, (bool, i64)> = HashMap::new();
    for r in results {
        last.insert(&r.endpoint_id, (r.attempt == Attempt::Delivered, r.now_ms));
    }
    let rows = Rows::new()
        .text("id", last.keys().map(|k| (*k).to_owned()).collect())
        .bool("ok", last.values().map(|v| v.0).collect())
        .int("now_ms", last.values().map(|v| v.1).collect());
    let mut health = Sql::new(
        d,
        "UPDATE event_endpoints AS e SET failing_since_ms = CASE WHEN v.ok THEN NULL \
         ELSE COALESCE(e.failing_since_ms, v.now_ms) END FROM ",
    );
    health.rows(rows).push(" AS v WHERE e.id = v.id");
    conn.execute(health).await?;
    let ids: Vec<String> = last.keys().map(|k| (*k).to_owned()).collect();
    let mut disable = Sql::new(
        d,
        "UPDATE event_endpoints SET enabled = FALSE, disabled_reason = 'FailingTooLong', updated_ms = $1 \
         WHERE enabled AND failing_since_ms IS NOT NULL AND failing_since_ms < $2 AND ",
    );
    disable.arg(results.iter().map(|r| r.now_ms).max().unwrap_or(0)).arg(disable_before_ms);
    disable.in_list("id", ids).push(" RETURNING id, tenant, name");
    conn.fetch_all(disable).await
}

/// Queues again, for `tenant`'s endpoint `endpoint` (or all of its endpoints), every
/// event created in [`since_ms`, `until_ms`) that the endpoint takes and that is not
/// delivered or already queued: failed ones, and those it never got (it was disabled
/// or did not exist yet). How many deliveries were queued.
pub async fn replay<C: Conn>(
    conn: &mut C,
    tenant: &str,
    endpoint: Option<&str>,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> StoreResult<u64> {
    let d = conn.dialect();
    let mut sql = Sql::new(
        d,
        &format!(
            "INSERT INTO event_deliveries (event_id, endpoint_id, request_id, event_seq, status, attempts, \
             next_attempt_ms, updated_ms) SELECT o.id, e.id, o.request_id, o.{}, 'Pending', 0, $1, $1 \
             FROM event_outbox o JOIN event_endpoints e ON e.tenant = o.tenant AND {TYPE_MATCHES} \
             WHERE o.tenant = $2 AND o.created_ms >= $3 AND o.created_ms < $4 AND ($5 = '' OR e.id = $5) \
             ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'Pending', attempts = 0, \
             next_attempt_ms = excluded.next_attempt_ms, locked_until_ms = NULL, last_error = NULL, \
             updated_ms = excluded.updated_ms WHERE event_deliveries.status = 'Failed'",
            d.seq()
        ),
    );
    sql.arg(now_ms).arg(tenant).arg(since_ms).arg(until_ms).arg(endpoint.unwrap_or(""));
    conn.execute(sql).await
}

// ---- endpoints ------------------------------------------------------------------

row! {
    struct EndpointRow {
        id: String,
        name: String,
        url: String,
        event_types: String,
        enabled: bool,
        disabled_reason: Option<String>,
        failing_since_ms: Option<i64>,
        created_ms: i64,
        updated_ms: i64,
    }
}

impl EndpointRow {
    fn into_record(self) -> StoreResult<EventEndpoint> {
        let event_types = EventEndpoint::parse_types_column(&self.event_types)
            .ok_or_else(|| StoreError::Corrupt(format!("event_endpoints.event_types = {:?}", self.event_types)))?;
        Ok(EventEndpoint {
            id: self.id,
            name: self.name,
            url: self.url,
            event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            failing_since_ms: self.failing_since_ms,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

const ENDPOINT_COLUMNS: &str =
    "id, name, url, event_types, enabled, disabled_reason, failing_since_ms, created_ms, updated_ms";

/// A new endpoint; `None` when the tenant already has one of that name.
pub async fn create_endpoint<C: Conn>(
    conn: &mut C,
    tenant: &str,
    endpoint: &EventEndpoint,
    secret: &str,
) -> StoreResult<Option<EventEndpoint>> {
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO event_endpoints (id, tenant, name, url, secret, event_types, enabled, disabled_reason, \
         failing_since_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8) \
         ON CONFLICT (tenant, name) DO NOTHING RETURNING ",
    );
    sql.push(ENDPOINT_COLUMNS);
    sql.arg(endpoint.id.as_str())
        .arg(tenant)
        .arg(endpoint.name.as_str())
        .arg(endpoint.url.as_str())
        .arg(secret)
        .arg(EventEndpoint::types_column(&endpoint.event_types))
        .arg(endpoint.enabled)
        .arg(endpoint.created_ms);
    conn.fetch_optional::<EndpointRow>(sql).await?.map(EndpointRow::into_record).transpose()
}

/// Creates or updates the tenant's endpoint of that name with the file's URL, types and
/// secret; an existing one keeps its id and whether it is enabled.
pub async fn declare_endpoint<C: Conn>(
    conn: &mut C,
    tenant: &str,
    endpoint: &EventEndpoint,
    secret: &str,
) -> StoreResult<EventEndpoint> {
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO event_endpoints (id, tenant, name, url, secret, event_types, enabled, disabled_reason, \
         failing_since_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8) \
         ON CONFLICT (tenant, name) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
         event_types = excluded.event_types, updated_ms = excluded.updated_ms RETURNING ",
    );
    sql.push(ENDPOINT_COLUMNS);
    sql.arg(endpoint.id.as_str())
        .arg(tenant)
        .arg(endpoint.name.as_str())
        .arg(endpoint.url.as_str())
        .arg(secret)
        .arg(EventEndpoint::types_column(&endpoint.event_types))
        .arg(endpoint.enabled)
        .arg(endpoint.created_ms);
    conn.fetch_one::<EndpointRow>(sql).await?.into_record()
}

pub async fn list_endpoints<C: Conn>(conn: &mut C, tenant: &str) -> StoreResult<Vec<EventEndpoint>> {
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE tenant = "));
    sql.bind(tenant).push(" ORDER BY name");
    conn.fetch_all::<EndpointRow>(sql).await?.into_iter().map(EndpointRow::into_record).collect()
}

/// What an update changes; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    /// `Some(true)` re-enables (forgetting the run of failures), `Some(false)` disables.
    pub enabled: Option<bool>,
}

pub async fn update_endpoint<C: Conn>(
    conn: &mut C,
    tenant: &str,
    id: &str,
    change: &EndpointChange,
    now_ms: i64,
) -> StoreResult<Option<EventEndpoint>> {
    let mut sql = Sql::new(
        conn.dialect(),
        "UPDATE event_endpoints SET url = COALESCE($3, url), event_types = COALESCE($4, event_types), \
         enabled = COALESCE($5, enabled), \
         disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason WHEN $5 THEN NULL ELSE 'Disabled' END, \
         failing_since_ms = CASE WHEN $5 THEN NULL ELSE failing_since_ms END, updated_ms = $6 \
         WHERE tenant = $1 AND id = $2 RETURNING ",
    );
    sql.push(ENDPOINT_COLUMNS);
    sql.arg(tenant)
        .arg(id)
        .arg(change.url.clone())
        .arg(change.event_types.as_deref().map(EventEndpoint::types_column))
        .arg(super::Arg::OptBool(change.enabled))
        .arg(now_ms);
    conn.fetch_optional::<EndpointRow>(sql).await?.map(EndpointRow::into_record).transpose()
}

/// Deletes the endpoint and its deliveries; false when the tenant has no such endpoint.
pub async fn delete_endpoint<C: Conn>(conn: &mut C, tenant: &str, id: &str) -> StoreResult<bool> {
    let mut deliveries = Sql::new(
        conn.dialect(),
        "DELETE FROM event_deliveries WHERE endpoint_id IN (SELECT id FROM event_endpoints WHERE tenant = $1 AND id = $2)",
    );
    deliveries.arg(tenant).arg(id);
    conn.execute(deliveries).await?;
    let mut sql = Sql::new(conn.dialect(), "DELETE FROM event_endpoints WHERE tenant = $1 AND id = $2");
    sql.arg(tenant).arg(id);
    Ok(conn.execute(sql).await? > 0)
}
