//! Named leases: one holder at a time across nodes for work that must not run
//! twice at once (pruning). Taken when free or expired, renewed by its holder,
//! given up when done. Not tenant data.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};

use super::sql;
use crate::db::{Db, StoreError, stored_time};

const TAKE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.expires_at < $4 OR leases.holder = excluded.holder";

/// Takes (or, for its holder, renews) lease `name` until `until`: false
/// while another holder's lease has not expired at `now`.
pub async fn take(
    db: &Db,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let backend = db.backend();
    let values: Vec<Value> = vec![
        name.into(),
        holder.into(),
        stored_time(until).into(),
        stored_time(now).into(),
    ];
    let result = db
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql(backend, TAKE),
            values,
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Gives lease `name` up (when `holder` still holds it).
pub async fn give_up(
    db: &Db,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let backend = db.backend();
    db.conn()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3",
            ),
            [stored_time(now).into(), name.into(), holder.into()],
        ))
        .await?;
    Ok(())
}

/// Removes lease `name`, whoever holds it (what it guarded is gone).
pub async fn forget(db: &Db, name: &str) -> Result<(), StoreError> {
    let backend = db.backend();
    db.conn()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql(backend, "DELETE FROM leases WHERE name = $1"),
            [name.into()],
        ))
        .await?;
    Ok(())
}

/// The leases named `<prefix>…` that another holder than `holder` holds at
/// `now` (so a node does not try to take each of them in turn).
pub async fn held_by_others(
    db: &Db,
    prefix: &str,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let backend = db.backend();
    let rows = db
        .conn()
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT name FROM leases WHERE name LIKE $1 AND holder <> $2 AND expires_at >= $3",
            ),
            [
                format!("{prefix}%").into(),
                holder.into(),
                stored_time(now).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").map_err(StoreError::from))
        .collect()
}
