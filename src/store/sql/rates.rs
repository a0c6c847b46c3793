//! Per-channel rate limits held across replicas (PostgreSQL): one row per channel with
//! the GCRA state of `domain::rates`, read and written under its row lock in one short
//! transaction per (claim, channel), so slots granted on different replicas never
//! overlap. The rule itself is the pure `grant_slots`, the same one the in-process
//! limiter runs.

use super::{Conn, Sql};
use crate::domain::RecordId;
use crate::domain::rates::{SlotGrant, grant_slots, pause_slots};
use crate::store::StoreResult;

/// The channel's state, locked until the caller's transaction ends.
async fn locked_state<C: Conn>(conn: &mut C, channel: &RecordId) -> StoreResult<Option<f64>> {
    let d = conn.dialect();
    let mut ensure = Sql::new(d, "INSERT INTO channel_slots (channel_id, tat_ms) VALUES (");
    ensure.bind(channel.as_str()).push(", NULL) ON CONFLICT (channel_id) DO NOTHING");
    conn.execute(ensure).await?;
    let mut read = Sql::new(d, "SELECT tat_ms FROM channel_slots WHERE channel_id = ");
    read.bind(channel.as_str()).push(d.for_update());
    let (tat,): (Option<f64>,) = conn.fetch_one(read).await?;
    Ok(tat)
}

async fn store_state<C: Conn>(conn: &mut C, channel: &RecordId, tat: f64) -> StoreResult<()> {
    let mut write = Sql::new(conn.dialect(), "UPDATE channel_slots SET tat_ms = ");
    write.bind(tat).push(" WHERE channel_id = ").bind(channel.as_str());
    conn.execute(write).await?;
    Ok(())
}

/// Grants up to `want` of the channel's slots within `horizon_ms` (see `grant_slots`),
/// in the caller's transaction.
pub async fn reserve<C: Conn>(
    conn: &mut C,
    channel: &RecordId,
    rate: f64,
    want: u32,
    now: i64,
    horizon_ms: i64,
) -> StoreResult<SlotGrant> {
    let tat = locked_state(conn, channel).await?;
    let grant = grant_slots(tat, now, rate, want, horizon_ms);
    if Some(grant.tat) != tat {
        store_state(conn, channel, grant.tat).await?;
    }
    Ok(grant)
}

/// No slot of the channel starts before `until_ms`, on any replica.
pub async fn pause<C: Conn>(conn: &mut C, channel: &RecordId, until_ms: i64) -> StoreResult<()> {
    let tat = locked_state(conn, channel).await?;
    store_state(conn, channel, pause_slots(tat, until_ms)).await
}
