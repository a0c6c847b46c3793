//! Reads over many requests — SOQL queries, gRPC `ListRequests`, the replication
//! resources and the tombstones behind `getDeleted` — as a supertrait of `Store`, so a
//! backend implements them in its own file (`sqlite/reads.rs`, `postgres/reads.rs`)
//! from one shared SQL text (`sql`). Every read is scoped to one tenant and bounded:
//! a page, a count, or at most the caller's limit of ids. Nothing is ever read whole
//! into memory.

use async_trait::async_trait;

use crate::domain::RecordId;
use crate::domain::model::{MessageRecord, MessageState, RequestRecord};
use crate::domain::query::{RequestQuery, SortValue};
use crate::store::StoreResult;

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

/// Requests whose messages or counts one statement reads at most (bind limits).
pub const IDS_PER_STATEMENT: usize = 500;

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
