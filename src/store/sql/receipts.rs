//! Recording delivery receipts, both backends, set-wise: every receipt of a writer
//! batch is matched in two statements (by provider message id, by message identifier),
//! moved through the pure rules of `domain::receipt` in arrival order, and written back
//! in one `UPDATE`. A receipt matches only a message of its tenant sent on the channel
//! its URL names. The matched rows are locked for the transaction (PostgreSQL), so two
//! replicas recording receipts for one message cannot lose either.

use crate::store::sql::lite::row;
use std::collections::HashMap;

use super::delivery::rfc3339;
use super::outbox::{self, NewEvent};
use super::{Conn, Dialect, Rows, Sql};
use crate::domain::RecordId;
use crate::domain::model::{Delivery, DeliveryState};
use crate::domain::receipt::{self, Report};
use crate::store::StoreResult;
use crate::store::rows::parse_pick;

/// How a receipt names its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKey {
    /// The id the provider answered the send with (Twilio `MessageSid`, WhatsApp `wamid…`).
    ProviderId(String),
    /// convmsg's message identifier (a webhook gateway knows it: it is the `webhook-id`).
    Identifier(String),
}

/// One provider report to record.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub tenant: String,
    /// The channel the receipt's URL names: only its messages match.
    pub channel_id: RecordId,
    pub key: MessageKey,
    pub report: Report,
    /// When the provider says it happened (or when it reached convmsg).
    pub at_ms: i64,
    pub now_ms: i64,
}

/// What recording one receipt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// No message of the tenant and channel has that id.
    Unknown,
    /// Matched; `changed` is false for a duplicate or a late report.
    Matched { request_id: RecordId, identifier: String, changed: bool, delivery: Delivery },
}

row! {
    struct Found {
        identifier: String,
        request_id: String,
        provider_message_id: Option<String>,
        delivery_state: Option<String>,
        sent_ms: Option<i64>,
        delivered_ms: Option<i64>,
        read_ms: Option<i64>,
        undelivered_ms: Option<i64>,
        delivery_error_code: Option<String>,
    }
}

struct Current {
    request_id: String,
    provider_message_id: Option<String>,
    delivery: Delivery,
    before: Delivery,
    now_ms: i64,
}

fn lock(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "",
        Dialect::Postgres => " ORDER BY m.identifier FOR UPDATE OF m",
    }
}

/// The messages named by `keys` (of the tenant, on the channel), locked.
async fn find<C: Conn>(
    conn: &mut C,
    by_identifier: bool,
    keys: Vec<(String, String, String)>,
) -> StoreResult<Vec<Found>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let d = conn.dialect();
    let column = if by_identifier { "m.identifier" } else { "m.provider_message_id" };
    let rows = Rows::new()
        .text("tenant", keys.iter().map(|k| k.0.clone()).collect())
        .text("channel_id", keys.iter().map(|k| k.1.clone()).collect())
        .text("key", keys.into_iter().map(|k| k.2).collect());
    let mut sql = Sql::new(
        d,
        "SELECT m.identifier, m.request_id, m.provider_message_id, m.delivery_state, m.sent_ms, \
         m.delivered_ms, m.read_ms, m.undelivered_ms, m.delivery_error_code FROM ",
    );
    sql.rows(rows).push(&format!(
        " AS v JOIN messages m ON m.tenant = v.tenant AND {column} = v.key \
         JOIN end_users e ON e.id = m.end_user_id AND e.channel_id = v.channel_id"
    ));
    // One row per (receipt, message): `record` keeps one per message.
    sql.push(lock(d));
    conn.fetch_all(sql).await
}

/// Records `receipts` in the caller's transaction; an outcome per receipt, in order.
pub async fn record<C: Conn>(conn: &mut C, receipts: &[&Receipt]) -> StoreResult<Vec<ReceiptOutcome>> {
    if receipts.is_empty() {
        return Ok(Vec::new());
    }
    let key_of = |r: &Receipt, by_identifier: bool| match (&r.key, by_identifier) {
        (MessageKey::Identifier(k), true) | (MessageKey::ProviderId(k), false) => {
            Some((r.tenant.clone(), r.channel_id.as_str().to_owned(), k.clone()))
        }
        _ => None,
    };
    let by_id: Vec<_> = receipts.iter().filter_map(|r| key_of(r, true)).collect();
    let by_provider: Vec<_> = receipts.iter().filter_map(|r| key_of(r, false)).collect();
    let mut current: HashMap<String, Current> = HashMap::new();
    let mut by_provider_id: HashMap<String, Vec<String>> = HashMap::new();
    let found = find(conn, true, by_id).await?.into_iter().chain(find(conn, false, by_provider).await?);
    for f in found {
        if let Some(pmid) = &f.provider_message_id {
            let same = by_provider_id.entry(pmid.clone()).or_default();
            if !same.contains(&f.identifier) {
                same.push(f.identifier.clone());
            }
        }
        if current.contains_key(&f.identifier) {
            continue;
        }
        let delivery = Delivery {
            state: f
                .delivery_state
                .as_deref()
                .map(|s| parse_pick::<DeliveryState>("messages.delivery_state", s))
                .transpose()?,
            sent_ms: f.sent_ms,
            delivered_ms: f.delivered_ms,
            read_ms: f.read_ms,
            undelivered_ms: f.undelivered_ms,
            error_code: f.delivery_error_code,
        };
        current.insert(
            f.identifier,
            Current {
                request_id: f.request_id,
                provider_message_id: f.provider_message_id.clone(),
                before: delivery.clone(),
                delivery,
                now_ms: 0,
            },
        );
    }

    // In arrival order, so a batch holding `delivered` then `read` ends `Read`.
    let mut outcomes = Vec::with_capacity(receipts.len());
    let mut events = Vec::new();
    for r in receipts {
        let identifiers: Vec<String> = match &r.key {
            MessageKey::Identifier(id) if current.contains_key(id) => vec![id.clone()],
            MessageKey::Identifier(_) => Vec::new(),
            MessageKey::ProviderId(p) => by_provider_id.get(p).cloned().unwrap_or_default(),
        };
        // A provider id names one message; should several share it, each is moved and
        // the receipt reports the first.
        let mut first = None;
        for identifier in identifiers {
            let Some(c) = current.get_mut(&identifier) else { continue };
            let state_before = c.delivery.state;
            let changed = receipt::apply(&mut c.delivery, &r.report, r.at_ms);
            if changed {
                c.now_ms = c.now_ms.max(r.now_ms);
            }
            if let Some(kind) = r.report.event_type().filter(|_| c.delivery.state != state_before) {
                events.push(NewEvent {
                    tenant: r.tenant.clone(),
                    kind,
                    request_id: c.request_id.clone(),
                    data: serde_json::json!({
                        "tenant": r.tenant,
                        "request_id": c.request_id,
                        "message_identifier": identifier,
                        "provider_message_id": c.provider_message_id,
                        "delivery_state": c.delivery.state.map(|s| s.as_str()),
                        "error_code": c.delivery.error_code,
                        "occurred_at": rfc3339(r.at_ms),
                    }),
                    now_ms: r.now_ms,
                });
            }
            first.get_or_insert(ReceiptOutcome::Matched {
                request_id: RecordId::from_trusted(c.request_id.clone()),
                identifier,
                changed,
                delivery: c.delivery.clone(),
            });
        }
        outcomes.push(first.unwrap_or(ReceiptOutcome::Unknown));
    }

    let changed: Vec<(&String, &Current)> = current.iter().filter(|(_, c)| c.delivery != c.before).collect();
    if !changed.is_empty() {
        let rows = Rows::new()
            .text("identifier", changed.iter().map(|(id, _)| (*id).clone()).collect())
            .opt_text("state", changed.iter().map(|(_, c)| c.delivery.state.map(|s| s.as_str().to_owned())).collect())
            .opt_int("sent_ms", changed.iter().map(|(_, c)| c.delivery.sent_ms).collect())
            .opt_int("delivered_ms", changed.iter().map(|(_, c)| c.delivery.delivered_ms).collect())
            .opt_int("read_ms", changed.iter().map(|(_, c)| c.delivery.read_ms).collect())
            .opt_int("undelivered_ms", changed.iter().map(|(_, c)| c.delivery.undelivered_ms).collect())
            .opt_text("error_code", changed.iter().map(|(_, c)| c.delivery.error_code.clone()).collect())
            .int("now_ms", changed.iter().map(|(_, c)| c.now_ms).collect());
        let mut sql = Sql::new(
            conn.dialect(),
            "UPDATE messages AS m SET delivery_state = v.state, sent_ms = v.sent_ms, delivered_ms = v.delivered_ms, \
             read_ms = v.read_ms, undelivered_ms = v.undelivered_ms, delivery_error_code = v.error_code, \
             updated_ms = v.now_ms FROM ",
        );
        sql.rows(rows).push(" AS v WHERE m.identifier = v.identifier");
        conn.execute(sql).await?;
    }
    outbox::enqueue(conn, events).await?;
    Ok(outcomes)
}
