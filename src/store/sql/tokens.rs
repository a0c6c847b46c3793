//! The token table, both backends. A grant never un-revokes: a revoked row is left as it is.

use super::{Conn, Sql};
use crate::domain::principal::{Principal, parse_scopes, scopes_to_string};
use crate::store::tokens::{ActiveToken, TokenGrant, TokenRecord, TokenSource};
use crate::store::{StoreError, StoreResult};

const RECORD_COLUMNS: &str = "token_sha256, tenant, scopes, label, source, created_ms, expires_ms, revoked_ms";

/// A row of `RECORD_COLUMNS`.
type Row = (String, String, String, String, String, i64, Option<i64>, Option<i64>);

fn principal(tenant: String, scopes: &str) -> StoreResult<Principal> {
    Ok(Principal { tenant, scopes: parse_scopes([scopes]).map_err(StoreError::Corrupt)? })
}

fn record(row: Row) -> StoreResult<TokenRecord> {
    let (sha256, tenant, scopes, label, source, created_ms, expires_ms, revoked_ms) = row;
    let source = TokenSource::parse(&source).ok_or_else(|| StoreError::Corrupt(format!("token source {source:?}")))?;
    Ok(TokenRecord {
        sha256,
        principal: principal(tenant, &scopes)?,
        label,
        source,
        created_ms,
        expires_ms,
        revoked_ms,
    })
}

/// Grants the token unless it was revoked; `false` when it stays revoked.
pub async fn upsert<C: Conn>(conn: &mut C, grant: &TokenGrant, now_ms: i64) -> StoreResult<bool> {
    let d = conn.dialect();
    let mut sql = Sql::new(
        d,
        "INSERT INTO tokens (token_sha256, tenant, scopes, label, source, expires_ms, created_ms) VALUES (",
    );
    sql.bind(&grant.sha256).push(", ").bind(&grant.principal.tenant).push(", ");
    sql.bind(scopes_to_string(&grant.principal.scopes)).push(", ").bind(&grant.label).push(", ");
    sql.bind(grant.source.as_str()).push(", ").bind(grant.expires_ms).push(", ").bind(now_ms);
    sql.push(
        ") ON CONFLICT (token_sha256) DO UPDATE SET tenant = excluded.tenant, scopes = excluded.scopes, \
         label = excluded.label, source = excluded.source, expires_ms = excluded.expires_ms \
         WHERE tokens.revoked_ms IS NULL",
    );
    conn.execute(sql).await?;
    let mut revoked = Sql::new(d, "SELECT revoked_ms FROM tokens WHERE token_sha256 = ");
    revoked.bind(&grant.sha256);
    let (revoked,): (Option<i64>,) = conn.fetch_one(revoked).await?;
    Ok(revoked.is_none())
}

/// Tokens neither revoked nor expired at `now_ms`.
pub async fn load_active<C: Conn>(conn: &mut C, now_ms: i64) -> StoreResult<Vec<ActiveToken>> {
    let mut sql = Sql::new(
        conn.dialect(),
        "SELECT token_sha256, tenant, scopes, expires_ms FROM tokens \
         WHERE revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $1)",
    );
    sql.arg(now_ms);
    let rows: Vec<(String, String, String, Option<i64>)> = conn.fetch_all(sql).await?;
    rows.into_iter()
        .map(|(sha256, tenant, scopes, expires_ms)| {
            Ok(ActiveToken { sha256, principal: principal(tenant, &scopes)?, expires_ms })
        })
        .collect()
}

/// Every token of the tenant, revoked and expired ones included, oldest first.
pub async fn list<C: Conn>(conn: &mut C, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
    let mut sql = Sql::new(conn.dialect(), &format!("SELECT {RECORD_COLUMNS} FROM tokens WHERE tenant = "));
    sql.bind(tenant).push(" ORDER BY created_ms, token_sha256");
    let rows: Vec<Row> = conn.fetch_all(sql).await?;
    rows.into_iter().map(record).collect()
}

/// Marks the tenant's token revoked (once: a second revocation keeps the first time).
pub async fn revoke<C: Conn>(
    conn: &mut C,
    tenant: &str,
    sha256: &str,
    now_ms: i64,
) -> StoreResult<Option<TokenRecord>> {
    let d = conn.dialect();
    let mut sql = Sql::new(d, "UPDATE tokens SET revoked_ms = ");
    sql.bind(now_ms).push(" WHERE tenant = ").bind(tenant).push(" AND token_sha256 = ").bind(sha256);
    sql.push(" AND revoked_ms IS NULL");
    conn.execute(sql).await?;
    let mut one = Sql::new(d, &format!("SELECT {RECORD_COLUMNS} FROM tokens WHERE tenant = "));
    one.bind(tenant).push(" AND token_sha256 = ").bind(sha256);
    let row: Option<Row> = conn.fetch_optional(one).await?;
    row.map(record).transpose()
}

/// Deletes the tokens of `source` whose hash is not in `keep`; how many.
pub async fn remove_except<C: Conn>(conn: &mut C, source: TokenSource, keep: &[String]) -> StoreResult<u64> {
    let mut sql = Sql::new(conn.dialect(), "DELETE FROM tokens WHERE source = ");
    sql.bind(source.as_str());
    if !keep.is_empty() {
        sql.push(" AND NOT (").in_list("token_sha256", keep.to_vec()).push(")");
    }
    conn.execute(sql).await
}
