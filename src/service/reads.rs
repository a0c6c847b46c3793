//! The read use cases over many requests that both doors share: one page of a request
//! query (SOQL on REST, `ListRequests` on gRPC), its total, its aggregates, and the
//! replication windows. Each checks the `read` scope and scopes the store's read to the
//! caller's tenant. Paging is stateless: a page ends with the position (sort values) of
//! its last record and how many records came so far, and the next page starts from those
//! alone — any replica can serve it.

use crate::domain::RecordId;
use crate::domain::principal::{Principal, Scope};
use crate::domain::query::{RequestQuery, SortValue};
use crate::domain::replication::{self, Kind, Window};
use crate::error::AppError;
use crate::store::reads::{PageSpec, QueriedRequest};

use super::Service;

/// Where a query's next page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The sort values of the last record returned; `None` on the first page.
    pub after: Option<Vec<SortValue>>,
    /// How many records the pages before returned.
    pub returned: u64,
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct QueryPage {
    pub records: Vec<QueriedRequest>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<Cursor>,
}

/// Ids changed in a window.
#[derive(Debug, Clone)]
pub struct Updated {
    pub ids: Vec<RecordId>,
    pub window: Window,
}

/// Requests deleted in a window, with when.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub records: Vec<(RecordId, i64)>,
    pub window: Window,
}

impl Service {
    /// The time queries are evaluated at (date literals, replication windows).
    pub fn now_ms(&self) -> i64 {
        self.now()
    }

    /// One page of at most `batch` records of `query`, starting at `cursor`, within the
    /// query's `LIMIT` and after its `OFFSET`. `with_messages` loads each record's
    /// messages (for the list fields); otherwise only their counts are read.
    pub async fn query_page(
        &self,
        principal: &Principal,
        query: &RequestQuery,
        cursor: &Cursor,
        batch: u32,
        with_messages: bool,
    ) -> Result<QueryPage, AppError> {
        principal.require(Scope::Read)?;
        let remaining = query.limit.map_or(u64::MAX, |limit| limit.saturating_sub(cursor.returned));
        let take = u64::from(batch.max(1)).min(remaining);
        if take == 0 {
            return Ok(QueryPage { records: Vec::new(), next: None });
        }
        let first = cursor.after.is_none() && cursor.returned == 0;
        let page = PageSpec {
            after: cursor.after.clone(),
            skip: if first { query.offset } else { 0 },
            // One more than asked, to know whether another page follows.
            take: u32::try_from(take + 1).unwrap_or(u32::MAX),
            with_messages,
        };
        let mut records = self.store.query_requests(&principal.tenant, query, &page).await?;
        let more = records.len() as u64 > take && remaining > take;
        records.truncate(take as usize);
        let next = match records.last() {
            Some(last) if more => {
                Some(Cursor { after: Some(last.position.clone()), returned: cursor.returned + records.len() as u64 })
            }
            _ => None,
        };
        Ok(QueryPage { records, next })
    }

    /// How many records the query returns in all (after its offset, within its limit).
    pub async fn count_query(&self, principal: &Principal, query: &RequestQuery) -> Result<u64, AppError> {
        principal.require(Scope::Read)?;
        Ok(self.store.count_requests(&principal.tenant, query).await?)
    }

    /// The query's `COUNT(field)` aggregates, in selection order.
    pub async fn aggregate_query(&self, principal: &Principal, query: &RequestQuery) -> Result<Vec<i64>, AppError> {
        principal.require(Scope::Read)?;
        Ok(self.store.aggregate_requests(&principal.tenant, query).await?)
    }

    /// Ids of the caller's requests modified in the window (`sObject Get Updated`).
    pub async fn updated_requests(
        &self,
        principal: &Principal,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Updated, AppError> {
        principal.require(Scope::Read)?;
        let window = replication::window(Kind::Updated, start_ms, end_ms, self.now()).map_err(AppError::invalid)?;
        let ids = self
            .store
            .updated_request_ids(&principal.tenant, window.start_ms, window.end_ms, replication::MAX_IDS + 1)
            .await?;
        if ids.len() > replication::MAX_IDS as usize {
            return Err(AppError::invalid(replication::too_many_ids()));
        }
        Ok(Updated { ids, window })
    }

    /// The caller's requests deleted in the window, with when (`sObject Get Deleted`).
    pub async fn deleted_requests(
        &self,
        principal: &Principal,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Deleted, AppError> {
        principal.require(Scope::Read)?;
        let window = replication::window(Kind::Deleted, start_ms, end_ms, self.now()).map_err(AppError::invalid)?;
        let records = self
            .store
            .deleted_request_ids(&principal.tenant, window.start_ms, window.end_ms, replication::MAX_IDS + 1)
            .await?;
        if records.len() > replication::MAX_IDS as usize {
            return Err(AppError::invalid(replication::too_many_ids()));
        }
        Ok(Deleted { records, window })
    }
}
