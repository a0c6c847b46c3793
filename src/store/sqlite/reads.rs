//! `RequestReads` on SQLite: runs the shared statements of `store::sql` on the read
//! pool, binds their parameters and reads rows back into records, counts and the
//! positions pages resume at. The tombstone writes go through the pool too (they are
//! small and rare, like the retention purge's).

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{FromRow, Row, Sqlite};

use super::SqliteStore;
use crate::domain::RecordId;
use crate::domain::model::MessageState;
use crate::domain::query::{RequestQuery, SortValue};
use crate::store::reads::{IDS_PER_STATEMENT, MessageCounts, PageSpec, QueriedRequest, RequestReads};
use crate::store::rows::{MessageRow, RequestRow, parse_pick};
use crate::store::sql::{self, Bind, Dialect, KeyKind};
use crate::store::{StoreError, StoreResult};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

fn bind_all<'q>(mut query: Query<'q>, binds: &'q [Bind]) -> Query<'q> {
    for bind in binds {
        query = match bind {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::Int(n) => query.bind(*n),
            Bind::Real(x) => query.bind(*x),
            Bind::Bool(b) => query.bind(*b),
        };
    }
    query
}

fn position(row: &SqliteRow, kinds: &[KeyKind]) -> StoreResult<Vec<SortValue>> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let column = format!("k{i}");
            Ok(match kind {
                KeyKind::Int => row.try_get::<Option<i64>, _>(column.as_str())?.map_or(SortValue::Null, SortValue::Int),
                KeyKind::Text => {
                    row.try_get::<Option<String>, _>(column.as_str())?.map_or(SortValue::Null, SortValue::Text)
                }
                KeyKind::Bool => {
                    row.try_get::<Option<bool>, _>(column.as_str())?.map_or(SortValue::Null, SortValue::Bool)
                }
            })
        })
        .collect()
}

#[async_trait]
impl RequestReads for SqliteStore {
    async fn query_requests(
        &self,
        tenant: &str,
        query: &RequestQuery,
        page: &PageSpec,
    ) -> StoreResult<Vec<QueriedRequest>> {
        let (statement, kinds) =
            sql::select_page(Dialect::Sqlite, tenant, query, page.after.as_deref(), page.skip, page.take);
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(statement.text.as_str())), &statement.binds)
            .fetch_all(&self.pool)
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let position = position(row, &kinds)?;
            found.push((RequestRow::from_row(row)?, position));
        }
        let ids: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<_, _>>()?;
        let mut messages = std::collections::HashMap::<String, Vec<MessageRow>>::new();
        let mut counts = std::collections::HashMap::<String, MessageCounts>::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            if page.with_messages {
                let text = sql::messages_of(chunk.len());
                let mut select = sqlx::query(sqlx::AssertSqlSafe(text.as_str()));
                for id in chunk {
                    select = select.bind(id.as_str());
                }
                for row in select.fetch_all(&self.pool).await? {
                    let request_id: String = row.try_get("request_id")?;
                    messages.entry(request_id).or_default().push(MessageRow::from_row(&row)?);
                }
            } else {
                let text = sql::message_counts_of(chunk.len());
                let mut select = sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(text.as_str()));
                for id in chunk {
                    select = select.bind(id.as_str());
                }
                for (request_id, status, n) in select.fetch_all(&self.pool).await? {
                    let state: MessageState = parse_pick("messages.status", &status)?;
                    counts.entry(request_id).or_default().add(state, n);
                }
            }
        }
        found
            .into_iter()
            .zip(ids)
            .map(|((row, position), id)| {
                let own = messages.remove(&id).unwrap_or_default();
                let own = own.into_iter().map(MessageRow::into_record).collect::<StoreResult<Vec<_>>>()?;
                let counts =
                    if page.with_messages { MessageCounts::of(&own) } else { counts.remove(&id).unwrap_or_default() };
                Ok(QueriedRequest { record: row.into_record(own)?, counts, position })
            })
            .collect()
    }

    async fn count_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<u64> {
        let statement = sql::count(Dialect::Sqlite, tenant, query);
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(statement.text.as_str())), &statement.binds)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn aggregate_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<Vec<i64>> {
        let statement = sql::aggregate(Dialect::Sqlite, tenant, query);
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(statement.text.as_str())), &statement.binds)
            .fetch_one(&self.pool)
            .await?;
        (0..row.len()).map(|i| row.try_get::<i64, _>(i).map_err(StoreError::from)).collect()
    }

    async fn updated_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<RecordId>> {
        let ids: Vec<String> = sqlx::query_scalar(sql::UPDATED_IDS)
            .bind(tenant)
            .bind(start_ms)
            .bind(end_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(RecordId::from_trusted).collect())
    }

    async fn deleted_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(RecordId, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::DELETED_IDS)
            .bind(tenant)
            .bind(start_ms)
            .bind(end_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id, at)| (RecordId::from_trusted(id), at)).collect())
    }

    async fn record_tombstones(&self, now_ms: i64, forget_before_ms: i64) -> StoreResult<(u64, u64)> {
        let stamped = sqlx::query(sql::STAMP_TOMBSTONES).bind(now_ms).execute(&self.pool).await?.rows_affected();
        let forgotten =
            sqlx::query(sql::FORGET_TOMBSTONES).bind(forget_before_ms).execute(&self.pool).await?.rows_affected();
        Ok((stamped, forgotten))
    }
}

#[cfg(test)]
#[path = "reads_tests.rs"]
mod tests;
