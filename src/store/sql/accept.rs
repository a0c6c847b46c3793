//! Recording a batch of accepts inside one transaction, set-wise: a fixed handful of
//! statements whatever the batch's size — an idempotency lookup, the keys, one name
//! sequence step per tenant, the requests, the messages, the queue counts — each with a
//! fixed text, so each is prepared once per connection.
//!
//! Idempotency keys are inserted first, in key order, with `ON CONFLICT DO NOTHING`:
//! on PostgreSQL a key another replica is recording at the same moment makes this insert
//! wait for that transaction, after which the key's owner is visible and the job is
//! answered as a replay or a conflict. Sorting keeps two batches from locking shared
//! keys in opposite orders. The name sequences come next, in tenant order, then the rows.
//! (The keys' foreign key to the request is deferred to the commit.)

use crate::store::sql::lite::row;
use std::collections::HashMap;

use super::{Conn, Rows, Sql, insert_rows};
use crate::domain::RecordId;
use crate::domain::ids::{IdKind, new_message_identifier, request_name};
use crate::domain::model::RequestStatus;
use crate::domain::send::NewSendRequest;
use crate::store::sql::counts::Deltas;
use crate::store::{AcceptOutcome, Accepted, StoreResult};

/// One accept of a batch: the tenant, the checked request and the time it arrived.
pub struct AcceptItem<'a> {
    pub tenant: &'a str,
    pub request: &'a NewSendRequest,
    pub now_ms: i64,
}

/// What one accept of a batch comes to.
#[derive(Debug, Clone)]
enum Plan {
    /// A new request, with its generated id and message identifiers.
    New { id: RecordId, identifiers: Vec<String> },
    /// The key was used before with the same request: answer as then.
    Replay(Accepted),
    /// The key was used before with another request.
    Conflict,
    /// The key is first used by an earlier accept of this batch (`index`).
    SameBatch { index: usize },
}

/// A stored idempotency key: its request's fingerprint and first answer.
type StoredKeys = HashMap<(String, String), (String, Accepted)>;

/// Records `items` in the connection's current transaction and returns each one's
/// answer, valid once that transaction commits. The requests it creates are added to
/// `deltas`, for the batch's one update of the queue counts (see `counts`).
pub async fn write_batch<C: Conn>(
    conn: &mut C,
    items: &[AcceptItem<'_>],
    deltas: &mut Deltas,
) -> StoreResult<Vec<AcceptOutcome>> {
    let fingerprints: Vec<Option<String>> =
        items.iter().map(|i| i.request.idempotency_key.as_ref().map(|_| i.request.fingerprint())).collect();
    let mut keyed: Vec<(&str, &str)> =
        items.iter().filter_map(|i| i.request.idempotency_key.as_deref().map(|k| (i.tenant, k))).collect();
    keyed.sort();
    keyed.dedup();
    let mut stored = stored_keys(conn, &keyed).await?;
    let mut plans = plan(items, &fingerprints, &stored);

    // Claim the new requests' keys; a key taken meanwhile (another replica) is re-planned
    // from its owner's row, now visible.
    let mut new_keys: Vec<(usize, &str, &str)> = items
        .iter()
        .zip(&plans)
        .enumerate()
        .filter_map(|(i, (item, plan))| match (plan, &item.request.idempotency_key) {
            (Plan::New { .. }, Some(key)) => Some((i, item.tenant, key.as_str())),
            _ => None,
        })
        .collect();
    if !new_keys.is_empty() {
        new_keys.sort_by(|a, b| (a.1, a.2).cmp(&(b.1, b.2)));
        let inserted = insert_keys(conn, items, &plans, &fingerprints, &new_keys).await?;
        let taken: Vec<(&str, &str)> = new_keys
            .iter()
            .filter(|(_, tenant, key)| !inserted.contains(&((*tenant).to_owned(), (*key).to_owned())))
            .map(|(_, tenant, key)| (*tenant, *key))
            .collect();
        if !taken.is_empty() {
            stored.extend(stored_keys(conn, &taken).await?);
            for (i, tenant, key) in &new_keys {
                if let Some((fingerprint, first)) = stored.get(&((*tenant).to_owned(), (*key).to_owned()))
                    && !inserted.contains(&((*tenant).to_owned(), (*key).to_owned()))
                {
                    plans[*i] = if Some(fingerprint) == fingerprints[*i].as_ref() {
                        Plan::Replay(first.clone())
                    } else {
                        Plan::Conflict
                    };
                }
            }
        }
    }

    let names = allocate_names(conn, items, &plans).await?;
    insert_requests(conn, items, &plans, &names).await?;
    insert_messages(conn, items, &plans).await?;
    let created = plans.iter().filter(|p| matches!(p, Plan::New { .. })).count() as i64;
    deltas.add(RequestStatus::Pending, created);
    Ok(answers(&plans, &fingerprints))
}

/// Decides every accept, in order: a key seen before, seen earlier in this batch, or new.
fn plan(items: &[AcceptItem<'_>], fingerprints: &[Option<String>], stored: &StoredKeys) -> Vec<Plan> {
    let mut first_use: HashMap<(&str, &str), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = item.request.idempotency_key.as_deref().map(|k| (item.tenant, k));
        let plan = match key {
            Some((tenant, k)) if stored.contains_key(&(tenant.to_owned(), k.to_owned())) => {
                let (fingerprint, first) = &stored[&(tenant.to_owned(), k.to_owned())];
                if Some(fingerprint) == fingerprints[i].as_ref() { Plan::Replay(first.clone()) } else { Plan::Conflict }
            }
            Some(k) if first_use.contains_key(&k) => Plan::SameBatch { index: first_use[&k] },
            other => {
                if let Some(k) = other {
                    first_use.insert(k, i);
                }
                Plan::New {
                    id: RecordId::generate(IdKind::SendRequest),
                    identifiers: item.request.recipients.iter().map(|_| new_message_identifier()).collect(),
                }
            }
        };
        plans.push(plan);
    }
    plans
}

fn answers(plans: &[Plan], fingerprints: &[Option<String>]) -> Vec<AcceptOutcome> {
    let accepted = |plan: &Plan| match plan {
        Plan::New { id, identifiers } => {
            Some(Accepted { request_id: id.clone(), message_identifiers: identifiers.clone() })
        }
        _ => None,
    };
    plans
        .iter()
        .enumerate()
        .map(|(i, plan)| match plan {
            Plan::New { .. } => AcceptOutcome::Created(accepted(plan).expect("a new plan")),
            Plan::Replay(first) => AcceptOutcome::Replayed(first.clone()),
            Plan::Conflict => AcceptOutcome::KeyConflict,
            Plan::SameBatch { index } => match accepted(&plans[*index]) {
                Some(first) if fingerprints[*index] == fingerprints[i] => AcceptOutcome::Replayed(first),
                Some(_) => AcceptOutcome::KeyConflict,
                // The first use turned out to be a replay or a conflict itself.
                None => match &plans[*index] {
                    Plan::Replay(first) if fingerprints[*index] == fingerprints[i] => {
                        AcceptOutcome::Replayed(first.clone())
                    }
                    _ => AcceptOutcome::KeyConflict,
                },
            },
        })
        .collect()
}

row! {
    struct StoredKeyRow {
        tenant: String,
        key: String,
        fingerprint: String,
        request_id: String,
        identifier: String,
    }
}

/// The stored fingerprint and first answer of each of these (tenant, key) pairs.
async fn stored_keys<C: Conn>(conn: &mut C, keys: &[(&str, &str)]) -> StoreResult<StoredKeys> {
    let mut found = StoredKeys::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let rows = Rows::new()
        .text("tenant", keys.iter().map(|(t, _)| (*t).to_owned()).collect())
        .text("key", keys.iter().map(|(_, k)| (*k).to_owned()).collect());
    let mut sql = Sql::new(
        conn.dialect(),
        "SELECT k.tenant, k.key, k.fingerprint, k.request_id, m.identifier FROM idempotency_keys k \
         JOIN ",
    );
    sql.rows(rows).push(
        " AS v ON k.tenant = v.tenant AND k.key = v.key JOIN messages m ON m.request_id = k.request_id \
         ORDER BY k.request_id, m.position",
    );
    for row in conn.fetch_all::<StoredKeyRow>(sql).await? {
        found
            .entry((row.tenant, row.key))
            .or_insert_with(|| {
                (
                    row.fingerprint,
                    Accepted { request_id: RecordId::from_trusted(row.request_id), message_identifiers: vec![] },
                )
            })
            .1
            .message_identifiers
            .push(row.identifier);
    }
    Ok(found)
}

/// Inserts the keys of new requests (sorted); returns the (tenant, key) pairs inserted.
async fn insert_keys<C: Conn>(
    conn: &mut C,
    items: &[AcceptItem<'_>],
    plans: &[Plan],
    fingerprints: &[Option<String>],
    new_keys: &[(usize, &str, &str)],
) -> StoreResult<Vec<(String, String)>> {
    let id_of = |i: usize| match &plans[i] {
        Plan::New { id, .. } => id.as_str().to_owned(),
        _ => unreachable!("only new requests' keys are inserted"),
    };
    let rows = Rows::new()
        .text("tenant", new_keys.iter().map(|(_, t, _)| (*t).to_owned()).collect())
        .text("key", new_keys.iter().map(|(_, _, k)| (*k).to_owned()).collect())
        .text("fingerprint", new_keys.iter().map(|(i, ..)| fingerprints[*i].clone().unwrap_or_default()).collect())
        .text("request_id", new_keys.iter().map(|(i, ..)| id_of(*i)).collect())
        .int("created_ms", new_keys.iter().map(|(i, ..)| items[*i].now_ms).collect());
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO idempotency_keys (tenant, key, fingerprint, request_id, created_ms) \
         SELECT tenant, key, fingerprint, request_id, created_ms FROM ",
    );
    // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint.
    sql.rows(rows)
        .push(" AS v WHERE true ORDER BY tenant, key ON CONFLICT (tenant, key) DO NOTHING RETURNING tenant, key");
    conn.fetch_all::<(String, String)>(sql).await
}

/// One sequence step per tenant for all its new requests: the names, in job order.
async fn allocate_names<C: Conn>(
    conn: &mut C,
    items: &[AcceptItem<'_>],
    plans: &[Plan],
) -> StoreResult<HashMap<usize, String>> {
    let mut per_tenant: Vec<(&str, i64)> = Vec::new();
    for (item, plan) in items.iter().zip(plans) {
        if matches!(plan, Plan::New { .. }) {
            match per_tenant.iter_mut().find(|(t, _)| *t == item.tenant) {
                Some((_, n)) => *n += 1,
                None => per_tenant.push((item.tenant, 1)),
            }
        }
    }
    let mut names = HashMap::new();
    if per_tenant.is_empty() {
        return Ok(names);
    }
    per_tenant.sort();
    let rows = Rows::new()
        .text("tenant", per_tenant.iter().map(|(t, _)| (*t).to_owned()).collect())
        .int("last_value", per_tenant.iter().map(|(_, n)| *n).collect());
    let mut sql =
        Sql::new(conn.dialect(), "INSERT INTO tenant_sequences (tenant, last_value) SELECT tenant, last_value FROM ");
    sql.rows(rows).push(
        " AS v WHERE true ORDER BY tenant ON CONFLICT (tenant) DO UPDATE SET \
         last_value = tenant_sequences.last_value + excluded.last_value RETURNING tenant, last_value",
    );
    let last: HashMap<String, i64> = conn.fetch_all::<(String, i64)>(sql).await?.into_iter().collect();
    let mut next: HashMap<&str, i64> =
        per_tenant.iter().map(|(t, n)| (*t, last.get(*t).copied().unwrap_or(*n) - n + 1)).collect();
    for (i, (item, plan)) in items.iter().zip(plans).enumerate() {
        if matches!(plan, Plan::New { .. }) {
            let sequence = next.get_mut(item.tenant).expect("counted above");
            names.insert(i, request_name(*sequence));
            *sequence += 1;
        }
    }
    Ok(names)
}

async fn insert_requests<C: Conn>(
    conn: &mut C,
    items: &[AcceptItem<'_>],
    plans: &[Plan],
    names: &HashMap<usize, String>,
) -> StoreResult<()> {
    let new: Vec<(usize, &AcceptItem<'_>, &RecordId)> = items
        .iter()
        .zip(plans)
        .enumerate()
        .filter_map(|(i, (item, plan))| match plan {
            Plan::New { id, .. } => Some((i, item, id)),
            _ => None,
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&NewSendRequest) -> String| new.iter().map(|(_, item, _)| f(item.request)).collect();
    let rows = Rows::new()
        .text("id", new.iter().map(|(_, _, id)| id.as_str().to_owned()).collect())
        .text("tenant", new.iter().map(|(_, item, _)| item.tenant.to_owned()).collect())
        .text("name", new.iter().map(|(i, ..)| names[i].clone()).collect())
        .text("definition_name", col(&|r| r.message_definition_name.clone()))
        .text("definition_id", col(&|r| r.message_definition_id.as_str().to_owned()))
        .text("request_type", col(&|r| r.request_type.as_str().to_owned()))
        .bool("enforce_consent", new.iter().map(|(_, item, _)| item.request.enforce_consent).collect())
        .text("consent_type", col(&|r| r.consent_type.as_str().to_owned()))
        .opt_text(
            "subscription_id",
            new.iter()
                .map(|(_, item, _)| item.request.subscription_id.as_ref().map(|s| s.as_str().to_owned()))
                .collect(),
        )
        .text("allowed_session_status", col(&|r| r.allowed_session_status.as_str().to_owned()))
        .text("parameters", col(&|r| r.parameters_json()))
        .opt_text("trace_context", new.iter().map(|(_, item, _)| item.request.trace_context.clone()).collect())
        .int("accepted_ms", new.iter().map(|(_, item, _)| item.now_ms).collect())
        .int("lane", new.iter().map(|(_, item, _)| item.request.priority.lane()).collect())
        .opt_int("send_at_ms", new.iter().map(|(_, item, _)| item.request.send_at_ms).collect());
    insert_rows(
        conn,
        "INSERT INTO send_requests (id, tenant, name, definition_name, definition_id, request_type, \
         enforce_consent, consent_type, subscription_id, allowed_session_status, status, parameters, \
         trace_context, accepted_ms, updated_ms, due_ms, waiting, lane, send_at_ms) \
         SELECT id, tenant, name, definition_name, definition_id, request_type, enforce_consent, consent_type, \
         subscription_id, allowed_session_status, 'Pending', parameters, trace_context, accepted_ms, accepted_ms, \
         COALESCE(send_at_ms, accepted_ms), send_at_ms IS NOT NULL, lane, send_at_ms FROM ",
        rows,
        " AS v",
    )
    .await?;
    Ok(())
}

async fn insert_messages<C: Conn>(conn: &mut C, items: &[AcceptItem<'_>], plans: &[Plan]) -> StoreResult<()> {
    let mut identifier = Vec::new();
    let mut tenant = Vec::new();
    let mut request_id = Vec::new();
    let mut position = Vec::new();
    let mut end_user_id = Vec::new();
    let mut platform_key = Vec::new();
    let mut created_ms = Vec::new();
    for (item, plan) in items.iter().zip(plans) {
        let Plan::New { id, identifiers } = plan else { continue };
        for (i, ((user, key), ident)) in item.request.recipients.iter().zip(identifiers).enumerate() {
            identifier.push(ident.clone());
            tenant.push(item.tenant.to_owned());
            request_id.push(id.as_str().to_owned());
            position.push(i as i64);
            end_user_id.push(user.as_str().to_owned());
            platform_key.push(key.clone());
            created_ms.push(item.now_ms);
        }
    }
    if identifier.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text("identifier", identifier)
        .text("tenant", tenant)
        .text("request_id", request_id)
        .int("position", position)
        .text("end_user_id", end_user_id)
        .text("platform_key", platform_key)
        .int("created_ms", created_ms);
    insert_rows(
        conn,
        "INSERT INTO messages (identifier, tenant, request_id, position, end_user_id, platform_key, status, \
         attempts, created_ms, updated_ms) \
         SELECT identifier, tenant, request_id, position, end_user_id, platform_key, 'Pending', 0, created_ms, \
         created_ms FROM ",
        rows,
        " AS v",
    )
    .await?;
    Ok(())
}
