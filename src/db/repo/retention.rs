//! Pruning statements: each deletes at most one batch of rows older than a
//! cutoff, in its own short statement, through an index (Signals per tenant
//! from the head of their arrival order, while they were received before the
//! cutoff; webhook deliveries by their UUID v7 ids, minted when they arrived:
//! the primary key; finished jobs by `finished_at`), so writers are never held
//! up for long. A cross-tenant maintenance operation, like
//! `keys::reencrypt_all`.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use super::sql;
use crate::db::{Db, StoreError, stored_time};

/// What can be pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Signals received before the cutoff.
    Signals,
    /// Succeeded or failed jobs that finished before the cutoff.
    Jobs,
    /// Webhook delivery ids (for dedupe) received before the cutoff.
    Deliveries,
    /// OAuth states that expired, or were used, before the cutoff.
    OAuthStates,
    /// Dashboard sessions that expired before the cutoff.
    Sessions,
}

impl Table {
    /// Every table, in pruning order.
    pub const ALL: [Table; 5] = [
        Table::Signals,
        Table::Jobs,
        Table::Deliveries,
        Table::OAuthStates,
        Table::Sessions,
    ];

    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Signals => "signals",
            Table::Jobs => "jobs",
            Table::Deliveries => "webhook_deliveries",
            Table::OAuthStates => "oauth_states",
            Table::Sessions => "ui_sessions",
        }
    }

    /// The pruning statement on `backend` (Signals: one tenant's batch).
    fn statement(self, backend: DbBackend) -> &'static str {
        match self {
            Table::Signals if backend == DbBackend::Postgres => PG_SIGNALS,
            Table::Signals => SQLITE_SIGNALS,
            Table::Jobs => {
                "DELETE FROM sync_jobs WHERE id IN \
                 (SELECT id FROM sync_jobs WHERE finished_at < $1 \
                  AND state IN ('succeeded', 'failed') LIMIT $2)"
            }
            Table::Deliveries => {
                "DELETE FROM webhook_deliveries WHERE id IN \
                 (SELECT id FROM webhook_deliveries WHERE id < $1 ORDER BY id LIMIT $2)"
            }
            Table::OAuthStates => {
                "DELETE FROM oauth_states WHERE state_hash IN \
                 (SELECT state_hash FROM oauth_states WHERE expires_at < $1 OR used_at < $1 LIMIT $2)"
            }
            Table::Sessions => {
                "DELETE FROM ui_sessions WHERE id IN \
                 (SELECT id FROM ui_sessions WHERE expires_at < $1 LIMIT $2)"
            }
        }
    }
}

/// `Table::Signals`, one tenant's batch on PostgreSQL: of the first `$3` of
/// its Signals in arrival order (the arrival index), those received before
/// `$2`. Arrival order is commit order, received times grow with it but for
/// the length of a sync run, so the head is where the old Signals are; one
/// received late behind them waits for the next round.
const PG_SIGNALS: &str = "DELETE FROM signals WHERE tenant_id = $1 AND id IN \
     (SELECT id FROM signals WHERE tenant_id = $1 ORDER BY arrival_xid, id LIMIT $3) \
     AND received_at < $2";

/// `Table::Signals` on SQLite, as [`PG_SIGNALS`] (the arrival order is the
/// rowid), and never the last row stored: a new row would take its rowid
/// again, an arrival position subscribers may have passed already.
const SQLITE_SIGNALS: &str = "DELETE FROM signals WHERE rowid IN \
     (SELECT rowid FROM signals INDEXED BY idx_signals_tenant_arrival WHERE tenant_id = $1 \
      AND rowid < (SELECT max(rowid) FROM signals) ORDER BY rowid LIMIT $3) \
     AND received_at < $2";

/// The tenants that have Signals, one probe of the primary key each.
const SIGNAL_TENANTS: &str = "WITH RECURSIVE t(id) AS \
     (SELECT (SELECT tenant_id FROM signals ORDER BY tenant_id LIMIT 1) \
     UNION ALL SELECT (SELECT tenant_id FROM signals WHERE tenant_id > t.id \
     ORDER BY tenant_id LIMIT 1) FROM t WHERE t.id IS NOT NULL) \
     SELECT id FROM t WHERE id IS NOT NULL";

/// The smallest UUID v7 minted at `at`: every id minted before it is smaller.
pub fn id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// Deletes at most `batch` rows of `table` older than `cutoff`; how many.
pub async fn prune_batch(
    db: &Db,
    table: Table,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, StoreError> {
    let backend = db.backend();
    if table == Table::Signals {
        return prune_signals(db, cutoff, batch).await;
    }
    let cutoff: Value = match table {
        Table::Deliveries => id_at(cutoff).into(),
        _ => stored_time(cutoff).into(),
    };
    let values = [cutoff, (batch as i64).into()];
    let result = db
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql(backend, table.statement(backend)),
            values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// `Table::Signals`: at most `batch` of each tenant's (each tenant its own
/// statement); how many in all.
async fn prune_signals(db: &Db, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, StoreError> {
    let backend = db.backend();
    let tenants = db
        .conn()
        .query_all_raw(Statement::from_string(backend, SIGNAL_TENANTS))
        .await?;
    let statement = sql(backend, Table::Signals.statement(backend));
    let mut pruned = 0;
    for row in tenants {
        let tenant: Uuid = row.try_get_by_index(0)?;
        let values: [Value; 3] = [
            tenant.into(),
            stored_time(cutoff).into(),
            (batch as i64).into(),
        ];
        pruned += db
            .conn()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                statement.clone(),
                values,
            ))
            .await?
            .rows_affected();
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_minted_before_a_time_sort_before_its_cutoff_id() {
        let at: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        let before = uuid::Builder::from_unix_timestamp_millis(
            at.timestamp_millis() as u64 - 1,
            &[0xff; 10],
        )
        .into_uuid();
        let after =
            uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64, &[1; 10])
                .into_uuid();
        assert!(before < id_at(at) && id_at(at) <= after);
        assert_eq!(id_at(at).get_version_num(), 7);
    }
}
