//! Signals in arrival order, tenant-scoped: what push delivery, the live
//! stream and `GET /signals?after=` walk. A position is where a Signal was
//! committed, not when it occurred (a backfill stores Signals that occurred
//! long ago). PostgreSQL: `(arrival_xid, id)`, read only below the oldest
//! transaction still in flight, so no position already passed can be filled
//! later; SQLite: the rowid (one writer, so rowids grow in commit order).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::signals::SignalFilter;
use crate::db::entities::signal::Model;
use crate::db::{Db, StoreError};
use crate::domain::{Signal, TenantId};

/// An arrival position: everything at or before it has been passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Position {
    /// SQLite: a rowid.
    Row(i64),
    /// PostgreSQL: a transaction id, then a Signal id within it.
    Xact {
        /// The storing transaction (`xid8`).
        xid: u64,
        /// The Signal.
        id: Uuid,
    },
}

impl Position {
    /// Before every Signal of `backend`.
    pub fn beginning(backend: DbBackend) -> Position {
        if backend == DbBackend::Postgres {
            Position::Xact {
                xid: 0,
                id: Uuid::nil(),
            }
        } else {
            Position::Row(0)
        }
    }

    /// The opaque text form (a stream event id, a subscription's cursor).
    pub fn encode(&self) -> String {
        let text = match self {
            Position::Row(n) => format!("a1.r.{n}"),
            Position::Xact { xid, id } => format!("a1.x.{xid}.{}", id.simple()),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Parses the opaque text form; `None` if it is not one of ours.
    pub fn decode(text: &str) -> Option<Position> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split('.');
        if parts.next()? != "a1" {
            return None;
        }
        let position = match parts.next()? {
            "r" => Position::Row(parts.next()?.parse().ok().filter(|n: &i64| *n >= 0)?),
            "x" => Position::Xact {
                xid: parts.next()?.parse().ok()?,
                id: Uuid::try_parse(parts.next()?).ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(position)
    }

    /// Whether positions of this kind are `backend`'s.
    pub fn fits(&self, backend: DbBackend) -> bool {
        matches!(
            (self, backend),
            (Position::Xact { .. }, DbBackend::Postgres) | (Position::Row(_), DbBackend::Sqlite)
        )
    }
}

/// One page in arrival order.
#[derive(Debug)]
pub struct Arrivals {
    /// The Signals after the position, each with its own position, oldest arrival first.
    pub signals: Vec<(Position, Signal)>,
    /// Where the next read starts: past every Signal returned and, when the
    /// page is not full, past every one that did not match the filter.
    pub next: Position,
    /// The horizon the read stopped at.
    pub horizon: Position,
}

/// The horizon: every Signal committed at or before it is visible now, and
/// none can be committed at or before it later. Not tenant data.
pub async fn horizon(db: &Db) -> Result<Position, StoreError> {
    let backend = db.backend();
    let sql = if backend == DbBackend::Postgres {
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h"
    } else {
        "SELECT CAST(coalesce(max(rowid), 0) AS TEXT) AS h FROM signals"
    };
    let row = db
        .reads()
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| StoreError::Corrupt("no horizon".into()))?;
    let h: String = row.try_get("", "h")?;
    let corrupt = || StoreError::Corrupt(format!("horizon {h:?}"));
    Ok(if backend == DbBackend::Postgres {
        // Every transaction below the oldest in flight has finished.
        let xmin: u64 = h.parse().map_err(|_| corrupt())?;
        Position::Xact {
            xid: xmin.checked_sub(1).ok_or_else(corrupt)?,
            id: Uuid::max(),
        }
    } else {
        Position::Row(h.parse().map_err(|_| corrupt())?)
    })
}

/// How long a reader with nothing to read waits before it looks again
/// without an announcement (a bounded fallback: PostgreSQL announces new
/// Signals across nodes; SQLite only within the node).
pub fn fallback(backend: DbBackend) -> std::time::Duration {
    if backend == DbBackend::Postgres {
        std::time::Duration::from_secs(5)
    } else {
        std::time::Duration::from_secs(1)
    }
}

/// The arrival column as text (selected `AS arrival`) and the arrival order.
fn arrival(backend: DbBackend) -> (&'static str, &'static str) {
    if backend == DbBackend::Postgres {
        ("arrival_xid::text", "arrival_xid, id")
    } else {
        ("CAST(rowid AS TEXT)", "rowid")
    }
}

/// The position of Signal `id` from its arrival column's text.
fn parse_arrival(backend: DbBackend, text: &str, id: Uuid) -> Result<Position, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("arrival {text:?}"));
    Ok(if backend == DbBackend::Postgres {
        Position::Xact {
            xid: text.parse().map_err(|_| corrupt())?,
            id,
        }
    } else {
        Position::Row(text.parse().map_err(|_| corrupt())?)
    })
}

/// Adds `value` to `values`: its `$n` placeholder (statements are written
/// with `$n` and turned into the backend's form by `repo::sql`).
fn bind(values: &mut Vec<Value>, value: Value) -> String {
    values.push(value);
    format!("${}", values.len())
}

/// `arrival <op> p`, bound into `values`.
fn compare(op: &str, p: Position, values: &mut Vec<Value>) -> String {
    match p {
        Position::Xact { xid, id } => {
            let x = bind(values, xid.to_string().into());
            let i = bind(values, id.into());
            format!("(arrival_xid, id) {op} ({x}::text::xid8, {i})")
        }
        Position::Row(n) => format!("rowid {op} {}", bind(values, n.into())),
    }
}

/// The position of the tenant's Signal `id`, if it has one.
pub async fn position_of(
    db: &Db,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Position>, StoreError> {
    let backend = db.backend();
    let sql = format!(
        "SELECT {} AS a FROM signals WHERE tenant_id = $1 AND id = $2",
        arrival(backend).0
    );
    let row = db
        .reads()
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            super::sql(backend, &sql),
            [(*tenant.as_uuid()).into(), id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let a: String = row.try_get("", "a")?;
    parse_arrival(backend, &a, id).map(Some)
}

/// Rows a filtered read looks at at most (the filters are checked on the
/// way; a read that finds fewer matches returns where it stopped looking).
pub const SCAN: u64 = 1_000;

/// Up to `limit` of the tenant's Signals matching `filter` (and of `kinds`
/// when not empty) after `after` and at or before `upto` (at most the
/// [`horizon`]), oldest arrival first; a filtered read looks at [`SCAN`] rows
/// at most.
pub async fn read(
    db: &Db,
    tenant: TenantId,
    filter: &SignalFilter,
    kinds: &[String],
    after: Position,
    upto: Option<Position>,
    limit: u64,
) -> Result<Arrivals, StoreError> {
    let backend = db.backend();
    let horizon = horizon(db).await?;
    let upto = upto.map_or(horizon, |u| u.min(horizon));
    if after >= upto || !after.fits(backend) || !upto.fits(backend) {
        return Ok(Arrivals {
            signals: Vec::new(),
            next: if upto.fits(backend) {
                after.max(upto)
            } else {
                after
            },
            horizon,
        });
    }
    let limit = limit.max(1);
    let filtered = filtered(filter, kinds);
    let statement = read_statement(backend, tenant, filter, kinds, after, upto, limit);
    let rows = db.reads().query_all_raw(statement).await?;
    let scanned = rows.len() as u64;
    let mut signals = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last = after;
    for row in &rows {
        let (position, signal) = positioned(backend, row)?;
        last = position;
        if filtered && !row.try_get::<bool>("", "matched")? {
            continue;
        }
        signals.push((position, signal));
        if signals.len() as u64 == limit {
            break;
        }
    }
    let next = if signals.len() as u64 == limit || (filtered && scanned >= SCAN) {
        // Full, or a filtered read that stopped looking: where it stopped.
        last
    } else {
        upto
    };
    Ok(Arrivals {
        signals,
        next,
        horizon,
    })
}

/// The tenant's Signals with these ids, in arrival order (a batch recorded
/// before it was sent, read again to retry it).
pub async fn by_ids(
    db: &Db,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<(Position, Signal)>, StoreError> {
    let backend = db.backend();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = vec![(*tenant.as_uuid()).into()];
    let list: Vec<String> = ids
        .iter()
        .map(|id| bind(&mut values, (*id).into()))
        .collect();
    let (arrival, order) = arrival(backend);
    let sql = format!(
        "SELECT {}, {arrival} AS arrival FROM signals WHERE tenant_id = $1 AND id IN ({}) ORDER BY {order}",
        super::signals::COLUMNS.join(", "),
        list.join(", ")
    );
    let rows = db
        .reads()
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            super::sql(backend, &sql),
            values,
        ))
        .await?;
    rows.iter().map(|row| positioned(backend, row)).collect()
}

/// A row's Signal and its position.
fn positioned(
    backend: DbBackend,
    row: &sea_orm::QueryResult,
) -> Result<(Position, Signal), StoreError> {
    let a: String = row.try_get("", "arrival")?;
    let model = Model::from_query_result(row, "")?;
    let position = parse_arrival(backend, &a, model.id)?;
    Ok((position, Signal::from(model)))
}

/// Whether a read has filters to check.
fn filtered(filter: &SignalFilter, kinds: &[String]) -> bool {
    filter.provider.is_some()
        || filter.connection_id.is_some()
        || filter.kind.is_some()
        || !kinds.is_empty()
}

/// The statement of [`read`] (`upto` already capped at the horizon): the
/// tenant's arrival index walked from `after`; with filters, [`SCAN`] rows
/// with a `matched` column (and the payload of matching ones only).
pub fn read_statement(
    backend: DbBackend,
    tenant: TenantId,
    filter: &SignalFilter,
    kinds: &[String],
    after: Position,
    upto: Position,
    limit: u64,
) -> Statement {
    let mut values: Vec<Value> = vec![(*tenant.as_uuid()).into()];
    let mut matched: Vec<String> = Vec::new();
    if let Some(p) = &filter.provider {
        matched.push(format!(
            "provider = {}",
            bind(&mut values, p.as_str().into())
        ));
    }
    if let Some(c) = filter.connection_id {
        matched.push(format!(
            "connection_id = {}",
            bind(&mut values, (*c.as_uuid()).into())
        ));
    }
    if let Some(k) = &filter.kind {
        matched.push(format!("kind = {}", bind(&mut values, k.as_str().into())));
    }
    if !kinds.is_empty() {
        let list: Vec<String> = kinds
            .iter()
            .map(|k| bind(&mut values, k.as_str().into()))
            .collect();
        matched.push(format!("kind IN ({})", list.join(", ")));
    }
    let mut sql = String::with_capacity(768);
    sql.push_str("SELECT ");
    if matched.is_empty() {
        sql.push_str(&super::signals::COLUMNS.join(", "));
    } else {
        let matched = matched.join(" AND ");
        let none = if backend == DbBackend::Postgres {
            "'null'::json"
        } else {
            "'null'"
        };
        for c in super::signals::COLUMNS {
            if c == "payload" {
                sql.push_str(&format!(
                    "CASE WHEN {matched} THEN payload ELSE {none} END AS payload, "
                ));
            } else {
                sql.push_str(c);
                sql.push_str(", ");
            }
        }
        sql.push_str(&format!("({matched}) AS matched"));
    }
    let (arrival, order) = arrival(backend);
    // On SQLite the planner would rather take a filter's index and sort: the
    // arrival index reads only what arrived after the position.
    let index = if backend == DbBackend::Postgres {
        ""
    } else {
        " INDEXED BY idx_signals_tenant_arrival"
    };
    sql.push_str(&format!(
        ", {arrival} AS arrival FROM signals{index} WHERE tenant_id = $1"
    ));
    for (op, p) in [(">", after), ("<=", upto)] {
        sql.push_str(" AND ");
        sql.push_str(&compare(op, p, &mut values));
    }
    let rows = if filtered(filter, kinds) {
        SCAN.max(limit)
    } else {
        limit.max(1)
    };
    let limit = bind(&mut values, (rows as i64).into());
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    Statement::from_sql_and_values(backend, super::sql(backend, &sql), values)
}

/// How many of the tenant's Signals arrived after `after`, counted up to
/// `cap + 1` at most (enough to tell whether there are more than `cap`).
pub async fn backlog(
    db: &Db,
    tenant: TenantId,
    after: Position,
    cap: u64,
) -> Result<u64, StoreError> {
    let backend = db.backend();
    let mut values: Vec<Value> = vec![(*tenant.as_uuid()).into()];
    let after = compare(">", after, &mut values);
    let cap = bind(
        &mut values,
        i64::try_from(cap.saturating_add(1))
            .unwrap_or(i64::MAX)
            .into(),
    );
    let sql = format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM signals WHERE tenant_id = $1 AND {after} LIMIT {cap}) t"
    );
    let row = db
        .reads()
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            super::sql(backend, &sql),
            values,
        ))
        .await?;
    let n: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_refuse_garbage() {
        let x = Position::Xact {
            xid: 981_234,
            id: Uuid::now_v7(),
        };
        for p in [Position::Row(0), Position::Row(77), x] {
            assert_eq!(Position::decode(&p.encode()), Some(p));
        }
        assert!(x.fits(DbBackend::Postgres) && !x.fits(DbBackend::Sqlite));
        let cursor = super::super::cursor::Cursor {
            time: chrono::DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap(),
            id: Uuid::now_v7(),
        };
        for bad in [
            String::new(),
            "abc".into(),
            cursor.encode(),
            URL_SAFE_NO_PAD.encode("a1.r.-1"),
            URL_SAFE_NO_PAD.encode("a1.r.1.2"),
            URL_SAFE_NO_PAD.encode("a1.x.1"),
            URL_SAFE_NO_PAD.encode("a1.q.1"),
        ] {
            assert_eq!(Position::decode(&bad), None, "{bad}");
        }
        assert!(Position::Row(3) < Position::Row(10));
        let a = Position::Xact {
            xid: 5,
            id: Uuid::max(),
        };
        let b = Position::Xact {
            xid: 6,
            id: Uuid::nil(),
        };
        assert!(a < b);
    }
}
