//! Requests by status, kept up to date by every write that changes a request's status
//! (in the same transaction), so the metrics read a handful of rows instead of counting
//! millions. Each writer updates its own rows (`shard`), so writers on several replicas
//! never wait on one another's counter rows; a reader sums the shards. At start the
//! counts are recounted from the requests once (`recount`), which also repairs any drift
//! (a row edited by hand, say).

use std::collections::BTreeMap;

use super::{Conn, Dialect, Rows, Sql};
use crate::domain::model::{Picklist, RequestStatus};
use crate::store::{QueueStats, StoreResult};

/// Changes to the number of requests per status, made by one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas(BTreeMap<&'static str, i64>);

impl Deltas {
    pub fn add(&mut self, status: RequestStatus, n: i64) {
        *self.0.entry(status.as_str()).or_default() += n;
    }

    /// `n` requests went from `from` to `to`.
    pub fn moved(&mut self, from: RequestStatus, to: RequestStatus, n: i64) {
        if from != to {
            self.add(from, -n);
            self.add(to, n);
        }
    }

    fn is_zero(&self) -> bool {
        self.0.values().all(|n| *n == 0)
    }
}

/// Adds `deltas` to this writer's rows.
pub async fn apply<C: Conn>(conn: &mut C, shard: i64, deltas: &Deltas) -> StoreResult<()> {
    if deltas.is_zero() {
        return Ok(());
    }
    let changed: Vec<(&str, i64)> = deltas.0.iter().filter(|(_, n)| **n != 0).map(|(s, n)| (*s, *n)).collect();
    let rows = Rows::new()
        .int("shard", changed.iter().map(|_| shard).collect())
        .text("status", changed.iter().map(|(s, _)| (*s).to_owned()).collect())
        .int("n", changed.iter().map(|(_, n)| *n).collect());
    let mut sql = Sql::new(conn.dialect(), "INSERT INTO queue_counts (shard, status, n) SELECT shard, status, n FROM ");
    sql.rows(rows).push(" AS v WHERE true ON CONFLICT (shard, status) DO UPDATE SET n = queue_counts.n + excluded.n");
    conn.execute(sql).await?;
    Ok(())
}

/// The number of requests per status, summed over the shards.
pub async fn totals<C: Conn>(conn: &mut C) -> StoreResult<QueueStats> {
    let sql = Sql::new(conn.dialect(), "SELECT status, CAST(SUM(n) AS BIGINT) FROM queue_counts GROUP BY status");
    let mut stats = QueueStats::default();
    for (status, n) in conn.fetch_all::<(String, i64)>(sql).await? {
        let n = n.max(0) as u64;
        match RequestStatus::parse_api(&status) {
            Some(RequestStatus::Pending) => stats.pending = n,
            Some(RequestStatus::InProgress) => stats.in_progress = n,
            Some(RequestStatus::Completed) => stats.completed = n,
            None => {}
        }
    }
    Ok(stats)
}

/// Replaces the counts with an exact count of the requests. Call inside a write
/// transaction; on PostgreSQL the table is locked first, so writers on other replicas
/// wait before touching their counter rows and their changes land after the recount.
pub async fn recount<C: Conn>(conn: &mut C) -> StoreResult<()> {
    if conn.dialect() == Dialect::Postgres {
        conn.run("LOCK TABLE queue_counts IN EXCLUSIVE MODE").await?;
    }
    conn.execute(Sql::new(conn.dialect(), "DELETE FROM queue_counts")).await?;
    conn.execute(Sql::new(
        conn.dialect(),
        "INSERT INTO queue_counts (shard, status, n) SELECT 0, status, COUNT(*) FROM send_requests GROUP BY status",
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_takes_from_one_status_and_gives_to_another() {
        let mut d = Deltas::default();
        d.add(RequestStatus::Pending, 3);
        d.moved(RequestStatus::Pending, RequestStatus::InProgress, 2);
        d.moved(RequestStatus::Completed, RequestStatus::Completed, 5);
        assert_eq!(d.0, BTreeMap::from([("Pending", 1), ("InProgress", 2)]));
        assert!(!d.is_zero());
        assert!(Deltas::default().is_zero());
    }
}
