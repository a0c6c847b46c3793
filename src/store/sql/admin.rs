//! Provisioning records, both backends: channels, messaging components, end users,
//! sessions, subscriptions and consents (tokens: `tokens`). Writes run inside the caller's write
//! transaction. On PostgreSQL two replicas may upsert the same declared record at the
//! same moment (both start from one config): an advisory lock on the record's unique
//! name makes the second wait for the first and update the record rather than meet the
//! unique constraint; a session change locks the end user's row, so two changes to one
//! end user run one after the other (as they do under SQLite's single writer).

use super::delivery::wake_held_messages;
use super::{Conn, Dialect, FromAnyRow, Sql};
use crate::domain::ids::IdKind;
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::store::rows::*;
use crate::store::*;

const END_USER_SELECT: &str = "SELECT e.id, e.channel_id, e.platform_key, e.name, e.consent_status, e.created_ms, \
     e.updated_ms, c.message_type AS channel_message_type, c.consent_type AS channel_consent_type \
     FROM end_users e JOIN channels c ON c.id = e.channel_id";

/// A table whose records are addressed by id or by a unique name.
#[derive(Clone, Copy)]
struct Named {
    table: &'static str,
    name_column: &'static str,
    kind: IdKind,
    /// The input field the name came from, for conflicts.
    field: &'static str,
}

const CHANNELS: Named = Named {
    table: "channels",
    name_column: "developer_name",
    kind: IdKind::MessagingChannel,
    field: "channel.developer_name",
};
const DEFINITIONS: Named = Named {
    table: "message_definitions",
    name_column: "api_name",
    kind: IdKind::MessageDefinition,
    field: "message_definition.api_name",
};
const SUBSCRIPTIONS: Named = Named {
    table: "subscriptions",
    name_column: "developer_name",
    kind: IdKind::CommSubscription,
    field: "communication_subscription.developer_name",
};

/// PostgreSQL: serialises, until the transaction ends, every upsert of one unique name,
/// so replicas that start together update one record one after the other instead of
/// both inserting and meeting the unique constraint. SQLite's one writer needs nothing.
async fn lock_name<C: Conn>(conn: &mut C, key: &str) -> StoreResult<()> {
    if conn.dialect() == Dialect::Postgres {
        let mut sql = Sql::new(Dialect::Postgres, "SELECT pg_advisory_xact_lock(hashtextextended(");
        sql.bind(key).push(", 0))");
        conn.execute(sql).await?;
    }
    Ok(())
}

/// Decides the id of an upsert addressed by id and/or unique name: the given id (which
/// must not clash with another record's name), the id of the record with that name,
/// or a new id. Returns the id and whether the record exists.
async fn resolve_upsert<C: Conn>(
    conn: &mut C,
    target: &Named,
    tenant: &str,
    id: Option<&RecordId>,
    name: &str,
) -> StoreResult<(RecordId, bool)> {
    let Named { table, name_column, kind, field } = *target;
    lock_name(conn, &format!("{table}/{tenant}/{name}")).await?;
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT id FROM {table} WHERE tenant = "));
    sql.bind(tenant).push(&format!(" AND {name_column} = ")).bind(name);
    let by_name: Option<(String,)> = conn.fetch_optional(sql).await?;
    let by_name = by_name.map(|(id,)| id);
    match id {
        Some(id) => {
            if let Some(other) = by_name.filter(|other| other != id.as_str()) {
                return Err(StoreError::conflict(
                    field,
                    format!("{name} is already the name of {other}; names are unique per tenant"),
                ));
            }
            let mut sql = Sql::new(conn.dialect(), &format!("SELECT tenant FROM {table} WHERE id = "));
            sql.bind(id.as_str());
            let owner: Option<(String,)> = conn.fetch_optional(sql).await?;
            match owner {
                Some((owner,)) if owner == tenant => Ok((id.clone(), true)),
                // Another tenant's id: refuse without saying whose.
                Some(_) => Err(StoreError::conflict(field.replace(name_column, "id"), "this id is taken")),
                None => Ok((id.clone(), false)),
            }
        }
        None => Ok(match by_name {
            Some(existing) => (RecordId::from_trusted(existing), true),
            None => (RecordId::generate(kind), false),
        }),
    }
}

fn unique_conflict(e: StoreError, field: &str, name: &str) -> StoreError {
    if super::is_unique_violation(&e) { StoreError::conflict(field, format!("{name} is already taken")) } else { e }
}

/// One record by id (`column = id`).
async fn fetch_by_id<C: Conn, R: FromAnyRow>(conn: &mut C, table: &str, id: &RecordId) -> StoreResult<R> {
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT * FROM {table} WHERE id = "));
    sql.bind(id.as_str());
    conn.fetch_one(sql).await
}

/// A record of the tenant by id or unique name.
async fn fetch_by_key<C: Conn, R: FromAnyRow>(
    conn: &mut C,
    table: &str,
    name_column: &str,
    tenant: &str,
    key: &Key,
) -> StoreResult<Option<R>> {
    let (column, value) = match key {
        Key::Id(id) => ("id", id.as_str()),
        Key::Name(name) => (name_column, name.as_str()),
    };
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT * FROM {table} WHERE tenant = "));
    sql.bind(tenant).push(&format!(" AND {column} = ")).bind(value);
    conn.fetch_optional(sql).await
}

/// Whether `id` is a record of `tenant` in `table`.
async fn exists<C: Conn>(conn: &mut C, table: &str, tenant: &str, id: &RecordId, lock: bool) -> StoreResult<bool> {
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT id FROM {table} WHERE id = "));
    sql.bind(id.as_str()).push(" AND tenant = ").bind(tenant);
    if lock {
        sql.push(conn.dialect().for_update());
    }
    Ok(conn.fetch_optional::<(String,)>(sql).await?.is_some())
}

pub async fn upsert_channel<C: Conn>(
    conn: &mut C,
    tenant: &str,
    c: ChannelUpsert,
    now: i64,
) -> StoreResult<(Channel, bool)> {
    let (id, exists) = resolve_upsert(conn, &CHANNELS, tenant, c.id.as_ref(), &c.developer_name).await?;
    let options = serde_json::to_string(&c.provider_options).unwrap_or_else(|_| "{}".into());
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO channels (id, tenant, developer_name, master_label, message_type, consent_type, provider, \
         platform_key, is_active, rate_limit_per_second, provider_options, created_ms, updated_ms) VALUES (",
    );
    sql.bind(id.as_str()).push(", ").bind(tenant).push(", ").bind(&c.developer_name).push(", ");
    sql.bind(&c.master_label).push(", ").bind(c.message_type.as_str()).push(", ");
    sql.bind(c.consent_type.as_str()).push(", ").bind(c.provider.as_str()).push(", ");
    sql.bind(&c.messaging_platform_key).push(", ").bind(c.is_active).push(", ");
    sql.bind(c.rate_limit_per_second).push(", ").bind(options).push(", ").bind(now).push(", ").bind(now);
    sql.push(
        ") ON CONFLICT (id) DO UPDATE SET developer_name = excluded.developer_name, \
         master_label = excluded.master_label, message_type = excluded.message_type, \
         consent_type = excluded.consent_type, provider = excluded.provider, platform_key = excluded.platform_key, \
         is_active = excluded.is_active, rate_limit_per_second = excluded.rate_limit_per_second, \
         provider_options = excluded.provider_options, updated_ms = excluded.updated_ms",
    );
    conn.execute(sql).await.map_err(|e| unique_conflict(e, "channel.developer_name", &c.developer_name))?;
    let row: ChannelRow = fetch_by_id(conn, "channels", &id).await?;
    Ok((row.into_record()?, !exists))
}

pub async fn get_channel<C: Conn>(conn: &mut C, tenant: &str, key: &Key) -> StoreResult<Option<Channel>> {
    let row: Option<ChannelRow> = fetch_by_key(conn, "channels", "developer_name", tenant, key).await?;
    row.map(ChannelRow::into_record).transpose()
}

/// The channel `id` of whichever tenant owns it, with that tenant: a provider's
/// callback URL names only the channel.
pub async fn find_channel_owner<C: Conn>(conn: &mut C, id: &RecordId) -> StoreResult<Option<(String, Channel)>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT tenant FROM channels WHERE id = ");
    sql.bind(id.as_str());
    let Some((tenant,)) = conn.fetch_optional::<(String,)>(sql).await? else { return Ok(None) };
    let channel = get_channel(conn, &tenant, &Key::Id(id.clone())).await?;
    Ok(channel.map(|c| (tenant, c)))
}

/// Runs a paged listing: rows after `after` in id order, one extra to know if more follow.
async fn page<C: Conn, R: FromAnyRow, T>(
    conn: &mut C,
    mut sql: Sql,
    after: Option<&RecordId>,
    id_column: &str,
    limit: u32,
    convert: impl Fn(R) -> StoreResult<T>,
    id_of: impl Fn(&T) -> RecordId,
) -> StoreResult<Page<T>> {
    if let Some(after) = after {
        sql.push(&format!(" AND {id_column} > ")).bind(after.as_str());
    }
    sql.push(&format!(" ORDER BY {id_column} LIMIT ")).bind(i64::from(limit) + 1);
    let rows: Vec<R> = conn.fetch_all(sql).await?;
    let mut items = rows.into_iter().map(convert).collect::<StoreResult<Vec<T>>>()?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(&id_of)
    } else {
        None
    };
    Ok(Page { items, next_after })
}

pub async fn list_channels<C: Conn>(
    conn: &mut C,
    tenant: &str,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<Channel>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT * FROM channels WHERE tenant = ");
    sql.bind(tenant);
    page(conn, sql, after, "id", limit, ChannelRow::into_record, |c: &Channel| c.id.clone()).await
}

pub async fn upsert_definition<C: Conn>(
    conn: &mut C,
    tenant: &str,
    d: DefinitionUpsert,
    now: i64,
) -> StoreResult<(MessageDefinition, bool)> {
    let (id, exists) = resolve_upsert(conn, &DEFINITIONS, tenant, d.id.as_ref(), &d.api_name).await?;
    let parameters = serde_json::to_string(&d.parameters).unwrap_or_else(|_| "[]".into());
    let template = d.external_template.as_ref().and_then(|t| serde_json::to_string(t).ok());
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO message_definitions (id, tenant, api_name, master_label, definition_type, is_active, \
         parameters, text_layout, external_template, created_ms, updated_ms) VALUES (",
    );
    sql.bind(id.as_str()).push(", ").bind(tenant).push(", ").bind(&d.api_name).push(", ");
    sql.bind(&d.master_label).push(", ").bind(d.definition_type.as_str()).push(", ").bind(d.is_active);
    sql.push(", ").bind(parameters).push(", ").bind(&d.text_layout).push(", ").bind(template).push(", ");
    sql.bind(now).push(", ").bind(now);
    sql.push(
        ") ON CONFLICT (id) DO UPDATE SET api_name = excluded.api_name, master_label = excluded.master_label, \
         definition_type = excluded.definition_type, is_active = excluded.is_active, \
         parameters = excluded.parameters, text_layout = excluded.text_layout, \
         external_template = excluded.external_template, updated_ms = excluded.updated_ms",
    );
    conn.execute(sql).await.map_err(|e| unique_conflict(e, "message_definition.api_name", &d.api_name))?;
    let row: DefinitionRow = fetch_by_id(conn, "message_definitions", &id).await?;
    Ok((row.into_record()?, !exists))
}

pub async fn get_definition<C: Conn>(conn: &mut C, tenant: &str, key: &Key) -> StoreResult<Option<MessageDefinition>> {
    let row: Option<DefinitionRow> = fetch_by_key(conn, "message_definitions", "api_name", tenant, key).await?;
    row.map(DefinitionRow::into_record).transpose()
}

pub async fn list_definitions<C: Conn>(
    conn: &mut C,
    tenant: &str,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<MessageDefinition>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT * FROM message_definitions WHERE tenant = ");
    sql.bind(tenant);
    page(conn, sql, after, "id", limit, DefinitionRow::into_record, |d: &MessageDefinition| d.id.clone()).await
}

/// All or nothing (the caller's transaction); results in input order.
pub async fn upsert_end_users<C: Conn>(
    conn: &mut C,
    tenant: &str,
    users: Vec<EndUserUpsert>,
    now: i64,
) -> StoreResult<Vec<EndUser>> {
    let mut ids = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let field = format!("messaging_end_users[{i}]");
        if !exists(conn, "channels", tenant, &u.channel_id, false).await? {
            return Err(StoreError::Conflict(Violation::new(
                format!("{field}.messaging_channel_id"),
                ErrorKind::InvalidIdField,
                format!("no channel {} in this tenant", u.channel_id),
            )));
        }
        lock_name(conn, &format!("end_users/{tenant}/{}/{}", u.channel_id, u.platform_key)).await?;
        let mut sql = Sql::new(conn.dialect(), "SELECT id FROM end_users WHERE tenant = ");
        sql.bind(tenant).push(" AND channel_id = ").bind(u.channel_id.as_str());
        sql.push(" AND platform_key = ").bind(&u.platform_key);
        let by_key: Option<(String,)> = conn.fetch_optional(sql).await?;
        let id = match (&u.id, by_key.map(|(id,)| id)) {
            (Some(given), Some(found)) if given.as_str() != found => {
                return Err(StoreError::conflict(
                    format!("{field}.id"),
                    format!("channel {} and platform key already belong to {found}", u.channel_id),
                ));
            }
            (Some(given), _) => {
                let mut sql =
                    Sql::new(conn.dialect(), "SELECT tenant, channel_id, platform_key FROM end_users WHERE id = ");
                sql.bind(given.as_str());
                let existing: Option<(String, String, String)> = conn.fetch_optional(sql).await?;
                match existing {
                    Some((owner, _, _)) if owner != tenant => {
                        return Err(StoreError::conflict(format!("{field}.id"), "this id is taken"));
                    }
                    Some((_, channel, key)) if channel != u.channel_id.as_str() || key != u.platform_key => {
                        return Err(StoreError::conflict(
                            format!("{field}.messaging_platform_key"),
                            "an end user's channel and platform key are set at creation and cannot change",
                        ));
                    }
                    _ => given.clone(),
                }
            }
            (None, Some(found)) => RecordId::from_trusted(found),
            (None, None) => RecordId::generate(IdKind::MessagingEndUser),
        };
        let mut sql = Sql::new(
            conn.dialect(),
            "INSERT INTO end_users (id, tenant, channel_id, platform_key, name, consent_status, created_ms, \
             updated_ms) VALUES (",
        );
        sql.bind(id.as_str()).push(", ").bind(tenant).push(", ").bind(u.channel_id.as_str()).push(", ");
        sql.bind(&u.platform_key).push(", ").bind(&u.name).push(", ").bind(u.consent_status.as_str());
        sql.push(", ").bind(now).push(", ").bind(now);
        sql.push(
            ") ON CONFLICT (id) DO UPDATE SET name = excluded.name, consent_status = excluded.consent_status, \
             updated_ms = excluded.updated_ms",
        );
        conn.execute(sql)
            .await
            .map_err(|e| unique_conflict(e, &format!("{field}.messaging_platform_key"), &u.platform_key))?;
        ids.push(id);
    }
    find_end_users(conn, tenant, &ids).await
}

/// The tenant's end users among `ids`, in the order of `ids` (unknown ids are absent).
pub async fn find_end_users<C: Conn>(conn: &mut C, tenant: &str, ids: &[RecordId]) -> StoreResult<Vec<EndUser>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(conn.dialect(), END_USER_SELECT);
    sql.push(" WHERE e.tenant = ").bind(tenant).push(" AND ");
    sql.in_list("e.id", ids.iter().map(|id| id.as_str().to_owned()).collect());
    let rows: Vec<EndUserRow> = conn.fetch_all(sql).await?;
    let mut users = rows.into_iter().map(EndUserRow::into_record).collect::<StoreResult<Vec<_>>>()?;
    let order: std::collections::HashMap<&RecordId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    users.sort_by_key(|u| order.get(&u.id).copied());
    Ok(users)
}

pub async fn list_end_users<C: Conn>(
    conn: &mut C,
    tenant: &str,
    channel: Option<&RecordId>,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<EndUser>> {
    let mut sql = Sql::new(conn.dialect(), END_USER_SELECT);
    sql.push(" WHERE e.tenant = ").bind(tenant);
    if let Some(channel) = channel {
        sql.push(" AND e.channel_id = ").bind(channel.as_str());
    }
    page(conn, sql, after, "e.id", limit, EndUserRow::into_record, |u: &EndUser| u.id.clone()).await
}

/// Sets the end user's session status (opening a new session when the last one ended),
/// and makes their held messages due at once.
pub async fn set_session_status<C: Conn>(
    conn: &mut C,
    tenant: &str,
    end_user: &RecordId,
    status: SessionStatus,
    now: i64,
) -> StoreResult<Option<Session>> {
    if !exists(conn, "end_users", tenant, end_user, true).await? {
        return Ok(None);
    }
    let d = conn.dialect();
    let mut sql = Sql::new(d, "SELECT * FROM sessions WHERE tenant = ");
    sql.bind(tenant).push(" AND end_user_id = ").bind(end_user.as_str());
    sql.push(&format!(" ORDER BY created_ms DESC, {} DESC LIMIT 1", d.seq()));
    let current: Option<SessionRow> = conn.fetch_optional(sql).await?;
    let current = current.map(SessionRow::into_record).transpose()?;
    let id = match current {
        // An open session changes status; so does a closed one that is set closed again.
        Some(s) if s.status.is_open() || !status.is_open() => {
            let mut sql = Sql::new(d, "UPDATE sessions SET status = ");
            sql.bind(status.as_str()).push(", updated_ms = ").bind(now).push(" WHERE id = ").bind(s.id.as_str());
            conn.execute(sql).await?;
            s.id
        }
        _ => {
            let id = RecordId::generate(IdKind::MessagingSession);
            let mut sql =
                Sql::new(d, "INSERT INTO sessions (id, tenant, end_user_id, status, created_ms, updated_ms) VALUES (");
            sql.bind(id.as_str()).push(", ").bind(tenant).push(", ").bind(end_user.as_str()).push(", ");
            sql.bind(status.as_str()).push(", ").bind(now).push(", ").bind(now).push(")");
            conn.execute(sql).await?;
            id
        }
    };
    let row: SessionRow = fetch_by_id(conn, "sessions", &id).await?;
    wake_held_messages(conn, tenant, end_user, now).await?;
    Ok(Some(row.into_record()?))
}

pub async fn upsert_subscription<C: Conn>(
    conn: &mut C,
    tenant: &str,
    s: SubscriptionUpsert,
    now: i64,
) -> StoreResult<(Subscription, bool)> {
    if !exists(conn, "channels", tenant, &s.channel_id, false).await? {
        return Err(StoreError::Conflict(Violation::new(
            "communication_subscription.messaging_channel_id",
            ErrorKind::InvalidIdField,
            format!("no channel {} in this tenant", s.channel_id),
        )));
    }
    let (id, exists) = resolve_upsert(conn, &SUBSCRIPTIONS, tenant, s.id.as_ref(), &s.developer_name).await?;
    let mut sql = Sql::new(
        conn.dialect(),
        "INSERT INTO subscriptions (id, tenant, developer_name, name, channel_id, is_active, created_ms, \
         updated_ms) VALUES (",
    );
    sql.bind(id.as_str()).push(", ").bind(tenant).push(", ").bind(&s.developer_name).push(", ");
    sql.bind(&s.name).push(", ").bind(s.channel_id.as_str()).push(", ").bind(s.is_active).push(", ");
    sql.bind(now).push(", ").bind(now);
    sql.push(
        ") ON CONFLICT (id) DO UPDATE SET developer_name = excluded.developer_name, name = excluded.name, \
         channel_id = excluded.channel_id, is_active = excluded.is_active, updated_ms = excluded.updated_ms",
    );
    conn.execute(sql)
        .await
        .map_err(|e| unique_conflict(e, "communication_subscription.developer_name", &s.developer_name))?;
    let row: SubscriptionRow = fetch_by_id(conn, "subscriptions", &id).await?;
    Ok((row.into_record(), !exists))
}

pub async fn get_subscription<C: Conn>(conn: &mut C, tenant: &str, id: &RecordId) -> StoreResult<Option<Subscription>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT * FROM subscriptions WHERE id = ");
    sql.bind(id.as_str()).push(" AND tenant = ").bind(tenant);
    let row: Option<SubscriptionRow> = conn.fetch_optional(sql).await?;
    Ok(row.map(SubscriptionRow::into_record))
}

/// Sets the consent of `end_users` to `subscription`; end users outside its channel are
/// a conflict. Returns how many consents were set.
pub async fn set_subscription_consent<C: Conn>(
    conn: &mut C,
    tenant: &str,
    subscription: &RecordId,
    end_users: &[RecordId],
    status: SubscriptionConsentStatus,
    now: i64,
) -> StoreResult<u32> {
    let mut sql = Sql::new(conn.dialect(), "SELECT channel_id FROM subscriptions WHERE id = ");
    sql.bind(subscription.as_str()).push(" AND tenant = ").bind(tenant);
    let Some((channel,)) = conn.fetch_optional::<(String,)>(sql).await? else {
        return Err(StoreError::Conflict(Violation::new(
            "communication_subscription_id",
            ErrorKind::InvalidIdField,
            format!("no communication subscription {subscription} in this tenant"),
        )));
    };
    let users = find_end_users(conn, tenant, end_users).await?;
    for (i, id) in end_users.iter().enumerate() {
        match users.iter().find(|u| u.id == *id) {
            None => {
                return Err(StoreError::Conflict(Violation::new(
                    format!("messaging_end_user_ids[{i}]"),
                    ErrorKind::InvalidIdField,
                    format!("no messaging end user {id} in this tenant"),
                )));
            }
            Some(u) if u.channel_id.as_str() != channel => {
                return Err(StoreError::conflict(
                    format!("messaging_end_user_ids[{i}]"),
                    format!("end user {id} is not on the subscription's channel {channel}"),
                ));
            }
            Some(_) => {}
        }
        let mut sql = Sql::new(
            conn.dialect(),
            "INSERT INTO subscription_consents (tenant, subscription_id, end_user_id, status, updated_ms) VALUES (",
        );
        sql.bind(tenant).push(", ").bind(subscription.as_str()).push(", ").bind(id.as_str()).push(", ");
        sql.bind(status.as_str()).push(", ").bind(now);
        sql.push(
            ") ON CONFLICT (subscription_id, end_user_id) DO UPDATE SET status = excluded.status, \
             updated_ms = excluded.updated_ms",
        );
        conn.execute(sql).await?;
    }
    Ok(end_users.len() as u32)
}
