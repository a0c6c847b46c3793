//! Which records the config file declared (`server::provision`), both backends: marked
//! at every start, so `provisioning.prune` can tell a record the file stopped listing
//! from one made through the API.

use super::{Conn, Rows, Sql};
use crate::domain::RecordId;
use crate::store::{DeclaredKind, StoreResult};

/// Marks `records` (tenant, id) of `kind` as declared (again).
pub async fn mark<C: Conn>(conn: &mut C, kind: DeclaredKind, records: &[(String, RecordId)]) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text("kind", records.iter().map(|_| kind.as_str().to_owned()).collect())
        .text("tenant", records.iter().map(|(t, _)| t.clone()).collect())
        .text("id", records.iter().map(|(_, id)| id.as_str().to_owned()).collect());
    let mut sql =
        Sql::new(conn.dialect(), "INSERT INTO declared_records (kind, tenant, id) SELECT kind, tenant, id FROM ");
    sql.rows(rows).push(" AS v WHERE true ON CONFLICT (kind, id) DO NOTHING");
    conn.execute(sql).await?;
    Ok(())
}

/// Every record of `kind` marked declared, by id.
pub async fn list<C: Conn>(conn: &mut C, kind: DeclaredKind) -> StoreResult<Vec<(String, RecordId)>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT tenant, id FROM declared_records WHERE kind = ");
    sql.bind(kind.as_str()).push(" ORDER BY id");
    let rows: Vec<(String, String)> = conn.fetch_all(sql).await?;
    Ok(rows.into_iter().map(|(t, id)| (t, RecordId::from_trusted(id))).collect())
}

/// Forgets the mark of one record (it was pruned, or is gone).
pub async fn unmark<C: Conn>(conn: &mut C, kind: DeclaredKind, id: &RecordId) -> StoreResult<()> {
    let mut sql = Sql::new(conn.dialect(), "DELETE FROM declared_records WHERE kind = ");
    sql.bind(kind.as_str()).push(" AND id = ").bind(id.as_str());
    conn.execute(sql).await?;
    Ok(())
}
