//! Provisioning records in PostgreSQL: channels, messaging components, end users,
//! sessions, subscriptions. Each write is one transaction; two replicas racing to create
//! the same name meet the unique constraint, which is reported as a conflict. Session
//! changes lock the end user's row, so two changes to one end user run one after the
//! other (as they do under SQLite's single writer).

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};

use super::rows::*;
use crate::domain::ids::IdKind;
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::store::*;

const END_USER_SELECT: &str = "SELECT e.id, e.channel_id, e.platform_key, e.name, e.consent_status, e.created_ms, \
     e.updated_ms, c.message_type AS channel_message_type, c.consent_type AS channel_consent_type \
     FROM end_users e JOIN channels c ON c.id = e.channel_id";

/// A unique-constraint failure (another record already has this name).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[derive(Clone, Copy)]
/// A table whose records are addressed by id or by a unique name.
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

/// Decides the id of an upsert addressed by id and/or unique name: the given id (which
/// must not clash with another record's name), the id of the record with that name,
/// or a new id. Returns the id and whether the record exists.
async fn resolve_upsert(
    conn: &mut PgConnection,
    target: &Named,
    tenant: &str,
    id: Option<&RecordId>,
    name: &str,
) -> StoreResult<(RecordId, bool)> {
    let Named { table, name_column, kind, field } = *target;
    lock_name(conn, &format!("{table}/{tenant}/{name}")).await?;
    let by_name: Option<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT id FROM {table} WHERE tenant = $1 AND {name_column} = $2")))
            .bind(tenant)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    match id {
        Some(id) => {
            if let Some(other) = by_name.filter(|other| other != id.as_str()) {
                return Err(StoreError::conflict(
                    field,
                    format!("{name} is already the name of {other}; names are unique per tenant"),
                ));
            }
            let owner: Option<String> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT tenant FROM {table} WHERE id = $1")))
                    .bind(id.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            match owner {
                Some(owner) if owner == tenant => Ok((id.clone(), true)),
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

/// Serialises, until the transaction ends, every upsert of one unique name: replicas
/// that start together and upsert the same declared records then update one record
/// one after the other instead of both inserting and meeting the unique constraint.
async fn lock_name(conn: &mut PgConnection, key: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(key).execute(&mut *conn).await?;
    Ok(())
}

fn unique_conflict(e: sqlx::Error, field: &str, name: &str) -> StoreError {
    if is_unique_violation(&e) { StoreError::conflict(field, format!("{name} is already taken")) } else { e.into() }
}

pub async fn upsert_channel(pool: &PgPool, tenant: &str, c: ChannelUpsert, now: i64) -> StoreResult<(Channel, bool)> {
    let mut tx = pool.begin().await?;
    let (id, exists) = resolve_upsert(&mut tx, &CHANNELS, tenant, c.id.as_ref(), &c.developer_name).await?;
    let options = serde_json::to_string(&c.provider_options).unwrap_or_else(|_| "{}".into());
    sqlx::query(
        "INSERT INTO channels (id, tenant, developer_name, master_label, message_type, consent_type, provider, \
         platform_key, is_active, rate_limit_per_second, provider_options, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO UPDATE SET \
         developer_name = excluded.developer_name, master_label = excluded.master_label, \
         message_type = excluded.message_type, consent_type = excluded.consent_type, provider = excluded.provider, \
         platform_key = excluded.platform_key, is_active = excluded.is_active, \
         rate_limit_per_second = excluded.rate_limit_per_second, provider_options = excluded.provider_options, \
         updated_ms = excluded.updated_ms",
    )
    .bind(id.as_str())
    .bind(tenant)
    .bind(&c.developer_name)
    .bind(&c.master_label)
    .bind(c.message_type.as_str())
    .bind(c.consent_type.as_str())
    .bind(&c.provider)
    .bind(&c.messaging_platform_key)
    .bind(c.is_active)
    .bind(c.rate_limit_per_second)
    .bind(options)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_conflict(e, "channel.developer_name", &c.developer_name))?;
    let row: ChannelRow =
        sqlx::query_as("SELECT * FROM channels WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok((row.into_record()?, !exists))
}

pub async fn get_channel(pool: &PgPool, tenant: &str, key: &Key) -> StoreResult<Option<Channel>> {
    let (column, value) = match key {
        Key::Id(id) => ("id", id.as_str()),
        Key::Name(name) => ("developer_name", name.as_str()),
    };
    let row: Option<ChannelRow> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT * FROM channels WHERE tenant = $1 AND {column} = $2")))
            .bind(tenant)
            .bind(value)
            .fetch_optional(pool)
            .await?;
    row.map(ChannelRow::into_record).transpose()
}

/// Runs a paged listing: rows after `after` in id order, one extra to know if more follow.
async fn page<R, T>(
    pool: &PgPool,
    mut query: QueryBuilder<Postgres>,
    after: Option<&RecordId>,
    id_column: &str,
    limit: u32,
    convert: impl Fn(R) -> StoreResult<T>,
    id_of: impl Fn(&T) -> RecordId,
) -> StoreResult<Page<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    if let Some(after) = after {
        query.push(format!(" AND {id_column} > ")).push_bind(after.as_str().to_owned());
    }
    query.push(format!(" ORDER BY {id_column} LIMIT ")).push_bind(i64::from(limit) + 1);
    let rows: Vec<R> = query.build_query_as().fetch_all(pool).await?;
    let mut items = rows.into_iter().map(convert).collect::<StoreResult<Vec<T>>>()?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(&id_of)
    } else {
        None
    };
    Ok(Page { items, next_after })
}

pub async fn list_channels(
    pool: &PgPool,
    tenant: &str,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<Channel>> {
    let mut q = QueryBuilder::new("SELECT * FROM channels WHERE tenant = ");
    q.push_bind(tenant.to_owned());
    page(pool, q, after, "id", limit, ChannelRow::into_record, |c: &Channel| c.id.clone()).await
}

pub async fn upsert_definition(
    pool: &PgPool,
    tenant: &str,
    d: DefinitionUpsert,
    now: i64,
) -> StoreResult<(MessageDefinition, bool)> {
    let mut tx = pool.begin().await?;
    let (id, exists) = resolve_upsert(&mut tx, &DEFINITIONS, tenant, d.id.as_ref(), &d.api_name).await?;
    let parameters = serde_json::to_string(&d.parameters).unwrap_or_else(|_| "[]".into());
    let template = d.external_template.as_ref().and_then(|t| serde_json::to_string(t).ok());
    sqlx::query(
        "INSERT INTO message_definitions (id, tenant, api_name, master_label, definition_type, is_active, parameters, \
         text_layout, external_template, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET api_name = excluded.api_name, master_label = excluded.master_label, \
         definition_type = excluded.definition_type, is_active = excluded.is_active, \
         parameters = excluded.parameters, text_layout = excluded.text_layout, \
         external_template = excluded.external_template, updated_ms = excluded.updated_ms",
    )
    .bind(id.as_str())
    .bind(tenant)
    .bind(&d.api_name)
    .bind(&d.master_label)
    .bind(d.definition_type.as_str())
    .bind(d.is_active)
    .bind(parameters)
    .bind(&d.text_layout)
    .bind(template)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_conflict(e, "message_definition.api_name", &d.api_name))?;
    let row: DefinitionRow =
        sqlx::query_as("SELECT * FROM message_definitions WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok((row.into_record()?, !exists))
}

pub async fn get_definition(pool: &PgPool, tenant: &str, key: &Key) -> StoreResult<Option<MessageDefinition>> {
    let (column, value) = match key {
        Key::Id(id) => ("id", id.as_str()),
        Key::Name(name) => ("api_name", name.as_str()),
    };
    let row: Option<DefinitionRow> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT * FROM message_definitions WHERE tenant = $1 AND {column} = $2")))
            .bind(tenant)
            .bind(value)
            .fetch_optional(pool)
            .await?;
    row.map(DefinitionRow::into_record).transpose()
}

pub async fn list_definitions(
    pool: &PgPool,
    tenant: &str,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<MessageDefinition>> {
    let mut q = QueryBuilder::new("SELECT * FROM message_definitions WHERE tenant = ");
    q.push_bind(tenant.to_owned());
    page(pool, q, after, "id", limit, DefinitionRow::into_record, |d: &MessageDefinition| d.id.clone()).await
}

pub async fn upsert_end_users(
    pool: &PgPool,
    tenant: &str,
    users: Vec<EndUserUpsert>,
    now: i64,
) -> StoreResult<Vec<EndUser>> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let field = format!("messaging_end_users[{i}]");
        let channel_known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 AND tenant = $2)")
                .bind(u.channel_id.as_str())
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
        if !channel_known {
            return Err(StoreError::Conflict(Violation::new(
                format!("{field}.messaging_channel_id"),
                ErrorKind::InvalidIdField,
                format!("no channel {} in this tenant", u.channel_id),
            )));
        }
        lock_name(&mut tx, &format!("end_users/{tenant}/{}/{}", u.channel_id, u.platform_key)).await?;
        let by_key: Option<String> =
            sqlx::query_scalar("SELECT id FROM end_users WHERE tenant = $1 AND channel_id = $2 AND platform_key = $3")
                .bind(tenant)
                .bind(u.channel_id.as_str())
                .bind(&u.platform_key)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match (&u.id, by_key) {
            (Some(given), Some(found)) if given.as_str() != found => {
                return Err(StoreError::conflict(
                    format!("{field}.id"),
                    format!("channel {} and platform key already belong to {found}", u.channel_id),
                ));
            }
            (Some(given), _) => {
                let existing: Option<(String, String, String)> =
                    sqlx::query_as("SELECT tenant, channel_id, platform_key FROM end_users WHERE id = $1")
                        .bind(given.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
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
        sqlx::query(
            "INSERT INTO end_users (id, tenant, channel_id, platform_key, name, consent_status, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             consent_status = excluded.consent_status, updated_ms = excluded.updated_ms",
        )
        .bind(id.as_str())
        .bind(tenant)
        .bind(u.channel_id.as_str())
        .bind(&u.platform_key)
        .bind(&u.name)
        .bind(u.consent_status.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, &format!("{field}.messaging_platform_key"), &u.platform_key))?;
        ids.push(id);
    }
    let found = find_end_users_in(&mut tx, tenant, &ids).await?;
    tx.commit().await?;
    Ok(found)
}

pub async fn find_end_users(pool: &PgPool, tenant: &str, ids: &[RecordId]) -> StoreResult<Vec<EndUser>> {
    let mut conn = pool.acquire().await?;
    find_end_users_in(&mut conn, tenant, ids).await
}

/// The tenant's end users among `ids`, in the order of `ids`.
pub(super) async fn find_end_users_in(
    conn: &mut PgConnection,
    tenant: &str,
    ids: &[RecordId],
) -> StoreResult<Vec<EndUser>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(END_USER_SELECT);
    q.push(" WHERE e.tenant = ").push_bind(tenant.to_owned()).push(" AND e.id IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str().to_owned());
    }
    q.push(")");
    let rows: Vec<EndUserRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    let mut users = rows.into_iter().map(EndUserRow::into_record).collect::<StoreResult<Vec<_>>>()?;
    users.sort_by_key(|u| ids.iter().position(|id| *id == u.id));
    Ok(users)
}

pub async fn list_end_users(
    pool: &PgPool,
    tenant: &str,
    channel: Option<&RecordId>,
    after: Option<&RecordId>,
    limit: u32,
) -> StoreResult<Page<EndUser>> {
    let mut q = QueryBuilder::new(END_USER_SELECT);
    q.push(" WHERE e.tenant = ").push_bind(tenant.to_owned());
    if let Some(channel) = channel {
        q.push(" AND e.channel_id = ").push_bind(channel.as_str().to_owned());
    }
    page(pool, q, after, "e.id", limit, EndUserRow::into_record, |u: &EndUser| u.id.clone()).await
}

pub async fn set_session_status(
    pool: &PgPool,
    tenant: &str,
    end_user: &RecordId,
    status: SessionStatus,
    now: i64,
) -> StoreResult<Option<Session>> {
    let mut tx = pool.begin().await?;
    let known: Option<String> = sqlx::query_scalar("SELECT id FROM end_users WHERE id = $1 AND tenant = $2 FOR UPDATE")
        .bind(end_user.as_str())
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    let current: Option<SessionRow> = sqlx::query_as(
        "SELECT * FROM sessions WHERE tenant = $1 AND end_user_id = $2 ORDER BY created_ms DESC, seq DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(end_user.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let current = current.map(SessionRow::into_record).transpose()?;
    let id = match current {
        // An open session changes status; so does a closed one that is set closed again.
        Some(s) if s.status.is_open() || !status.is_open() => {
            sqlx::query("UPDATE sessions SET status = $1, updated_ms = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(s.id.as_str())
                .execute(&mut *tx)
                .await?;
            s.id
        }
        _ => {
            let id = RecordId::generate(IdKind::MessagingSession);
            sqlx::query(
                "INSERT INTO sessions (id, tenant, end_user_id, status, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.as_str())
            .bind(tenant)
            .bind(end_user.as_str())
            .bind(status.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    let row: SessionRow =
        sqlx::query_as("SELECT * FROM sessions WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?;
    super::dispatch::wake_held_messages(&mut tx, tenant, end_user, now).await?;
    tx.commit().await?;
    Ok(Some(row.into_record()?))
}

pub async fn upsert_subscription(
    pool: &PgPool,
    tenant: &str,
    s: SubscriptionUpsert,
    now: i64,
) -> StoreResult<(Subscription, bool)> {
    let mut tx = pool.begin().await?;
    let channel_known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 AND tenant = $2)")
            .bind(s.channel_id.as_str())
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
    if !channel_known {
        return Err(StoreError::Conflict(Violation::new(
            "communication_subscription.messaging_channel_id",
            ErrorKind::InvalidIdField,
            format!("no channel {} in this tenant", s.channel_id),
        )));
    }
    let (id, exists) = resolve_upsert(&mut tx, &SUBSCRIPTIONS, tenant, s.id.as_ref(), &s.developer_name).await?;
    sqlx::query(
        "INSERT INTO subscriptions (id, tenant, developer_name, name, channel_id, is_active, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET developer_name = excluded.developer_name, \
         name = excluded.name, channel_id = excluded.channel_id, is_active = excluded.is_active, \
         updated_ms = excluded.updated_ms",
    )
    .bind(id.as_str())
    .bind(tenant)
    .bind(&s.developer_name)
    .bind(&s.name)
    .bind(s.channel_id.as_str())
    .bind(s.is_active)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_conflict(e, "communication_subscription.developer_name", &s.developer_name))?;
    let row: SubscriptionRow =
        sqlx::query_as("SELECT * FROM subscriptions WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok((row.into_record(), !exists))
}

pub async fn get_subscription(pool: &PgPool, tenant: &str, id: &RecordId) -> StoreResult<Option<Subscription>> {
    let row: Option<SubscriptionRow> = sqlx::query_as("SELECT * FROM subscriptions WHERE id = $1 AND tenant = $2")
        .bind(id.as_str())
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(SubscriptionRow::into_record))
}

pub async fn set_subscription_consent(
    pool: &PgPool,
    tenant: &str,
    subscription: &RecordId,
    end_users: &[RecordId],
    status: SubscriptionConsentStatus,
    now: i64,
) -> StoreResult<u32> {
    let mut tx = pool.begin().await?;
    let channel: Option<String> =
        sqlx::query_scalar("SELECT channel_id FROM subscriptions WHERE id = $1 AND tenant = $2")
            .bind(subscription.as_str())
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(channel) = channel else {
        return Err(StoreError::Conflict(Violation::new(
            "communication_subscription_id",
            ErrorKind::InvalidIdField,
            format!("no communication subscription {subscription} in this tenant"),
        )));
    };
    let users = find_end_users_in(&mut tx, tenant, end_users).await?;
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
        sqlx::query(
            "INSERT INTO subscription_consents (tenant, subscription_id, end_user_id, status, updated_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subscription_id, end_user_id) DO UPDATE SET \
             status = excluded.status, updated_ms = excluded.updated_ms",
        )
        .bind(tenant)
        .bind(subscription.as_str())
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(end_users.len() as u32)
}
