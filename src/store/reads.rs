//! Reads over many requests — SOQL queries, gRPC `ListRequests`, the replication
//! resources and the tombstones behind `getDeleted` — as a supertrait of `Store`,
//! implemented once for both backends over the SOQL compiler's statements
//! (`sql::soql`). Every read is scoped to one tenant and bounded: a page, a count, or at
//! most the caller's limit of ids. Nothing is ever read whole into memory.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::domain::RecordId;
use crate::domain::model::{MessageRecord, MessageState, RequestRecord};
use crate::domain::query::{RequestQuery, SortValue};
use crate::store::StoreResult;
use crate::store::rows::{MessageRow, RequestRow, parse_pick};
use crate::store::shared::{Backend, SqlStore};
use crate::store::sql::soql::{self, KeyKind};
use crate::store::sql::{AnyRow, Conn, Sql};

/// Which page of a query to read.
#[derive(Debug, Clone, Default)]
pub struct PageSpec {
    /// Resume after the record whose sort values these are (`RequestQuery::sort_keys`).
    pub after: Option<Vec<SortValue>>,
    /// Records to skip first (the query's `OFFSET`, on its first page only).
    pub skip: u64,
    /// Most records to read.
    pub take: u32,
    /// Load each record's messages (for the comma-joined list fields); otherwise only
    /// their counts are read.
    pub with_messages: bool,
}

/// How many of a request's messages are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub total: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub success: i64,
    pub failed: i64,
}

impl MessageCounts {
    pub fn of(messages: &[MessageRecord]) -> MessageCounts {
        let mut counts = MessageCounts::default();
        for m in messages {
            counts.add(m.status, 1);
        }
        counts
    }

    pub fn add(&mut self, state: MessageState, n: i64) {
        self.total += n;
        match state {
            MessageState::Pending => self.pending += n,
            MessageState::InProgress => self.in_progress += n,
            MessageState::Success => self.success += n,
            MessageState::Failed => self.failed += n,
        }
    }

    /// The count in `state`, or of all messages for `None`.
    pub fn get(&self, state: Option<MessageState>) -> i64 {
        match state {
            None => self.total,
            Some(MessageState::Pending) => self.pending,
            Some(MessageState::InProgress) => self.in_progress,
            Some(MessageState::Success) => self.success,
            Some(MessageState::Failed) => self.failed,
        }
    }
}

/// One record of a query's page.
#[derive(Debug, Clone)]
pub struct QueriedRequest {
    /// The record; `messages` is empty unless the page asked for them.
    pub record: RequestRecord,
    pub counts: MessageCounts,
    /// The record's values of the query's sort keys: where the next page resumes.
    pub position: Vec<SortValue>,
}

#[async_trait]
pub trait RequestReads: Send + Sync {
    /// One page of the records `query` matches, in `query.sort_keys()` order.
    async fn query_requests(
        &self,
        tenant: &str,
        query: &RequestQuery,
        page: &PageSpec,
    ) -> StoreResult<Vec<QueriedRequest>>;

    /// How many records `query` returns in all: matches after its `OFFSET`, at most its
    /// `LIMIT`.
    async fn count_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<u64>;

    /// `COUNT(field)` for each aggregate of `query`'s selection, over every match.
    async fn aggregate_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<Vec<i64>>;

    /// Ids of the requests last modified in `[start_ms, end_ms)`, oldest change first, at
    /// most `limit`.
    async fn updated_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<RecordId>>;

    /// Ids and deletion times of the requests deleted in `[start_ms, end_ms)`, oldest
    /// first, at most `limit`.
    async fn deleted_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(RecordId, i64)>>;

    /// Stamps the tombstones the delete trigger wrote since the last call with `now_ms`,
    /// and removes those deleted before `forget_before_ms`. Returns (stamped, removed).
    async fn record_tombstones(&self, now_ms: i64, forget_before_ms: i64) -> StoreResult<(u64, u64)>;
}

#[async_trait]
impl<B: Backend> RequestReads for SqlStore<B> {
    async fn query_requests(
        &self,
        tenant: &str,
        query: &RequestQuery,
        page: &PageSpec,
    ) -> StoreResult<Vec<QueriedRequest>> {
        let mut conn = self.read_conn().await?;
        let c = &mut *conn;
        let d = c.dialect();
        let (statement, kinds) = soql::select_page(d, tenant, query, page.after.as_deref(), page.skip, page.take);
        let rows = c.fetch_rows(statement.into_sql(d)).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push((row.decode::<RequestRow>()?, position(row, &kinds)?, row.opt_text("id")?.unwrap_or_default()));
        }
        let ids: Vec<String> = found.iter().map(|(.., id)| id.clone()).collect();
        let mut messages: HashMap<String, Vec<MessageRow>> = HashMap::new();
        let mut counts: HashMap<String, MessageCounts> = HashMap::new();
        if !ids.is_empty() {
            if page.with_messages {
                let mut sql = Sql::new(d, "SELECT * FROM messages WHERE ");
                sql.in_list("request_id", ids.clone()).push(" ORDER BY request_id, position");
                for row in c.fetch_rows(sql).await? {
                    let request_id = row.opt_text("request_id")?.unwrap_or_default();
                    messages.entry(request_id).or_default().push(row.decode::<MessageRow>()?);
                }
            } else {
                let mut sql = Sql::new(d, "SELECT request_id, status, CAST(COUNT(*) AS BIGINT) FROM messages WHERE ");
                sql.in_list("request_id", ids.clone()).push(" GROUP BY request_id, status");
                for (request_id, status, n) in c.fetch_all::<(String, String, i64)>(sql).await? {
                    let state: MessageState = parse_pick("messages.status", &status)?;
                    counts.entry(request_id).or_default().add(state, n);
                }
            }
        }
        found
            .into_iter()
            .map(|(row, position, id)| {
                let own = messages.remove(&id).unwrap_or_default();
                let own = own.into_iter().map(MessageRow::into_record).collect::<StoreResult<Vec<_>>>()?;
                let counts =
                    if page.with_messages { MessageCounts::of(&own) } else { counts.remove(&id).unwrap_or_default() };
                Ok(QueriedRequest { record: row.into_record(own)?, counts, position })
            })
            .collect()
    }

    async fn count_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<u64> {
        let mut conn = self.read_conn().await?;
        let d = conn.dialect();
        let (n,): (i64,) = conn.fetch_one(soql::count(d, tenant, query).into_sql(d)).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn aggregate_requests(&self, tenant: &str, query: &RequestQuery) -> StoreResult<Vec<i64>> {
        let mut conn = self.read_conn().await?;
        let d = conn.dialect();
        let rows = conn.fetch_rows(soql::aggregate(d, tenant, query).into_sql(d)).await?;
        rows.first().map(|r| r.all_i64()).unwrap_or_else(|| Ok(Vec::new()))
    }

    async fn updated_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<RecordId>> {
        let mut conn = self.read_conn().await?;
        let mut sql = Sql::new(conn.dialect(), soql::UPDATED_IDS);
        sql.arg(tenant).arg(start_ms).arg(end_ms).arg(i64::from(limit));
        let ids: Vec<(String,)> = conn.fetch_all(sql).await?;
        Ok(ids.into_iter().map(|(id,)| RecordId::from_trusted(id)).collect())
    }

    async fn deleted_request_ids(
        &self,
        tenant: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(RecordId, i64)>> {
        let mut conn = self.read_conn().await?;
        let mut sql = Sql::new(conn.dialect(), soql::DELETED_IDS);
        sql.arg(tenant).arg(start_ms).arg(end_ms).arg(i64::from(limit));
        let rows: Vec<(String, i64)> = conn.fetch_all(sql).await?;
        Ok(rows.into_iter().map(|(id, at)| (RecordId::from_trusted(id), at)).collect())
    }

    async fn record_tombstones(&self, now_ms: i64, forget_before_ms: i64) -> StoreResult<(u64, u64)> {
        let mut tx = self.begin_write().await?;
        let d = tx.dialect();
        let mut stamp = Sql::new(d, soql::STAMP_TOMBSTONES);
        stamp.arg(now_ms);
        let stamped = tx.execute(stamp).await?;
        let mut forget = Sql::new(d, soql::FORGET_TOMBSTONES);
        forget.arg(forget_before_ms);
        let forgotten = tx.execute(forget).await?;
        self.backend().commit(tx).await?;
        Ok((stamped, forgotten))
    }
}

/// Where a page resumes: the row's values of the query's sort keys (columns `k0`, `k1`, …).
fn position(row: &AnyRow, kinds: &[KeyKind]) -> StoreResult<Vec<SortValue>> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let column = format!("k{i}");
            Ok(match kind {
                KeyKind::Int => row.opt_i64(&column)?.map_or(SortValue::Null, SortValue::Int),
                KeyKind::Text => row.opt_text(&column)?.map_or(SortValue::Null, SortValue::Text),
                KeyKind::Bool => row.opt_bool(&column)?.map_or(SortValue::Null, SortValue::Bool),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_state_and_in_total() {
        let mut c = MessageCounts::default();
        c.add(MessageState::Failed, 2);
        c.add(MessageState::Success, 3);
        assert_eq!((c.get(None), c.get(Some(MessageState::Failed)), c.get(Some(MessageState::Pending))), (5, 2, 0));
    }
}

#[cfg(test)]
#[path = "reads_tests.rs"]
mod store_tests;
