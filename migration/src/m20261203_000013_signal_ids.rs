//! Signal ids derived from the event: the occurrence time in microseconds
//! (sign bit flipped, so it orders as an unsigned number) followed by the
//! first 64 bits of the dedupe hash (`domain::signal::signal_id`). The primary
//! key becomes `(tenant_id, id)`: it is the dedupe constraint and, since ids
//! order by time, the unfiltered listing's index; the filter indexes become
//! `(tenant_id, <filter>, id)`. Gone: the `dedupe_key` column, its unique
//! index and the separate time index (two fewer B-trees to write per Signal;
//! `benches/layout`). On PostgreSQL the JSON columns become `json`.
//!
//! Every stored Signal's id is rewritten. PostgreSQL in place; a push
//! subscription's position names a Signal id within a transaction, so each
//! is moved to the new id of the same Signal (or, if that Signal is gone, to
//! the start of its transaction: its Signals may be delivered again, none is
//! skipped). SQLite rebuilds the table keeping every rowid, which is the
//! arrival position there.
//!
//! Down restores the previous layout but not the previous ids (they are not
//! kept): each Signal keeps its derived id, and its dedupe key becomes the
//! id's hex, so an event stored before the rollback may be stored once more
//! after it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The new id of a Signal, in PostgreSQL SQL over its row (a Signal whose
/// dedupe key is its id's hex, as this migration's down leaves it, keeps it).
const PG_NEW_ID: &str = "CASE WHEN length(dedupe_key) = 32 THEN id ELSE \
     (lpad(to_hex(((extract(epoch FROM occurred_at) * 1000000)::bigint) \
     # (-9223372036854775807 - 1)), 16, '0') || substr(dedupe_key, 1, 16))::uuid END";

/// The filter indexes (name, columns), each ending in the id (the listing
/// order).
const FILTER_INDEXES: &[(&str, &str)] = &[
    ("idx_signals_tenant_provider_id", "tenant_id, provider, id"),
    (
        "idx_signals_tenant_provider_kind_id",
        "tenant_id, provider, kind, id",
    ),
    ("idx_signals_tenant_kind_id", "tenant_id, kind, id"),
    (
        "idx_signals_tenant_connection_id",
        "tenant_id, connection_id, id",
    ),
];

/// The JSON columns (PostgreSQL: `jsonb` before, `json` after).
const JSON_COLUMNS: [&str; 4] = ["participants", "tags", "related", "payload"];

/// `ALTER COLUMN … TYPE` clauses turning every JSON column into `to`.
fn json_columns_as(to: &str) -> String {
    JSON_COLUMNS
        .map(|c| format!("ALTER COLUMN {c} TYPE {to} USING {c}::{to}"))
        .join(", ")
}

/// The indexes this migration replaces.
const OLD_INDEXES: &[&str] = &[
    "idx_signals_tenant_time",
    "ux_signals_tenant_time_dedupe",
    "idx_signals_tenant_provider_time",
    "idx_signals_tenant_provider_kind_time_id",
    "idx_signals_tenant_kind_time",
    "idx_signals_tenant_connection_time",
    "idx_signals_tenant_arrival",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Postgres {
            move_positions(db).await?;
            for index in OLD_INDEXES {
                db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                    .await?;
            }
            db.execute_unprepared("ALTER TABLE signals DROP CONSTRAINT IF EXISTS signals_pkey")
                .await?;
            // One rewrite of the table: the new ids, and the JSON columns as
            // `json` (stored as sent; `jsonb`'s parsed form cost the insert
            // path about 4 % and nothing queries into it).
            db.execute_unprepared(&format!(
                "ALTER TABLE signals ALTER COLUMN id TYPE uuid USING {PG_NEW_ID}, {}",
                json_columns_as("json")
            ))
            .await?;
            db.execute_unprepared("ALTER TABLE signals ADD PRIMARY KEY (tenant_id, id)")
                .await?;
            db.execute_unprepared("ALTER TABLE signals DROP COLUMN dedupe_key")
                .await?;
            db.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_signals_tenant_arrival \
                 ON signals (tenant_id, arrival_xid, id)",
            )
            .await?;
        } else {
            rebuild_sqlite(m).await?;
        }
        for (name, columns) in FILTER_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON signals ({columns})"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, _) in FILTER_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        if m.get_database_backend() == DbBackend::Postgres {
            for sql in [
                "ALTER TABLE signals ADD COLUMN dedupe_key text",
                "UPDATE signals SET dedupe_key = replace(id::text, '-', '')",
                "ALTER TABLE signals ALTER COLUMN dedupe_key SET NOT NULL",
                "ALTER TABLE signals DROP CONSTRAINT IF EXISTS signals_pkey",
                "ALTER TABLE signals ADD PRIMARY KEY (id)",
            ] {
                db.execute_unprepared(sql).await?;
            }
            db.execute_unprepared(&format!("ALTER TABLE signals {}", json_columns_as("jsonb")))
                .await?;
        } else {
            let table = signal_columns(Table::create().table("signals_rebuilt").col(pk_uuid("id")))
                .col(text("dedupe_key"))
                .to_string(SqliteQueryBuilder);
            swap_sqlite(
                db,
                &table,
                &format!(
                    "INSERT INTO signals_rebuilt (rowid, id, {COPIED}, dedupe_key) \
                     SELECT rowid, id, {COPIED}, lower(hex(id)) FROM signals ORDER BY rowid"
                ),
            )
            .await?;
        }
        for sql in [
            "CREATE INDEX IF NOT EXISTS idx_signals_tenant_time ON signals (tenant_id, occurred_at DESC, id DESC)",
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_signals_tenant_time_dedupe ON signals (tenant_id, occurred_at, dedupe_key)",
            "CREATE INDEX IF NOT EXISTS idx_signals_tenant_provider_time ON signals (tenant_id, provider, occurred_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_signals_tenant_provider_kind_time_id ON signals (tenant_id, provider, kind, occurred_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_signals_tenant_kind_time ON signals (tenant_id, kind, occurred_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_signals_tenant_connection_time ON signals (tenant_id, connection_id, occurred_at, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Every column but the id (and the dedupe key), in `COPIED` order.
fn signal_columns(table: &mut TableCreateStatement) -> &mut TableCreateStatement {
    table
        .col(uuid("tenant_id"))
        .col(uuid("connection_id"))
        .col(text("provider"))
        .col(text("kind"))
        .col(timestamp_with_time_zone("occurred_at"))
        .col(timestamp_with_time_zone("received_at"))
        .col(text("external_id"))
        .col(text("summary"))
        .col(text_null("priority"))
        .col(json_binary("participants"))
        .col(json_binary("tags"))
        .col(json_binary("related"))
        .col(text_null("url"))
        .col(json_binary("payload"))
}

/// The columns a rebuild copies as they are.
const COPIED: &str = "tenant_id, connection_id, provider, kind, occurred_at, received_at, \
     external_id, summary, priority, participants, tags, related, url, payload";

/// The new id from an occurrence time in microseconds and a dedupe key (hex).
fn new_id(micros: i64, dedupe_key: &str) -> Result<[u8; 16], DbErr> {
    let hash = dedupe_key
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| DbErr::Migration(format!("not a dedupe key: {dedupe_key:?}")))?;
    let mut id = [0; 16];
    id[..8].copy_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
    id[8..].copy_from_slice(&hash.to_be_bytes());
    Ok(id)
}

/// Microseconds since the epoch of a time as SQLite holds it (RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.f]` with an optional offset).
fn sqlite_micros(text: &str) -> Result<i64, DbErr> {
    let t = text.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z").map(|t| t.to_utc())
        })
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| DbErr::Migration(format!("not a stored time: {text:?}")))?;
    Ok(parsed.timestamp_micros())
}

/// SQLite: a new `signals` with the primary key `(tenant_id, id)`, every row
/// copied under its new id and its old rowid.
async fn rebuild_sqlite(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = m.get_connection();
    db.execute_unprepared("DROP TABLE IF EXISTS signal_new_ids")
        .await?;
    db.execute_unprepared("CREATE TABLE signal_new_ids (r INTEGER PRIMARY KEY, id BLOB NOT NULL)")
        .await?;
    let mut after = 0i64;
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT rowid AS r, id, occurred_at, dedupe_key FROM signals WHERE rowid > ? \
                 ORDER BY rowid LIMIT 500",
                [after.into()],
            ))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("", "r")?;
        let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 2);
        for row in &rows {
            let r: i64 = row.try_get("", "r")?;
            let at: String = row.try_get("", "occurred_at")?;
            let key: String = row.try_get("", "dedupe_key")?;
            let id: Vec<u8> = row.try_get("", "id")?;
            values.push(r.into());
            // Kept where this migration's down left the id as the key.
            values.push(
                if key.len() == 32 {
                    id
                } else {
                    new_id(sqlite_micros(&at)?, &key)?.to_vec()
                }
                .into(),
            );
        }
        let places = vec!["(?, ?)"; rows.len()].join(", ");
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("INSERT INTO signal_new_ids (r, id) VALUES {places}"),
            values,
        ))
        .await?;
    }
    let table = signal_columns(Table::create().table("signals_rebuilt").col(uuid("id")))
        .primary_key(Index::create().col("tenant_id").col("id"))
        .to_string(SqliteQueryBuilder);
    let copied = COPIED
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    swap_sqlite(
        db,
        &table,
        &format!(
            "INSERT INTO signals_rebuilt (rowid, id, {COPIED}) \
             SELECT s.rowid, n.id, {copied} FROM signals s JOIN signal_new_ids n ON n.r = s.rowid \
             ORDER BY s.rowid"
        ),
    )
    .await?;
    db.execute_unprepared("DROP TABLE signal_new_ids")
        .await
        .map(|_| ())
}

/// SQLite: `signals` replaced by the table `create` makes, filled by `copy`
/// (each row keeping its rowid), with the arrival index; in one statement
/// batch on one connection, inside a savepoint, so no other connection sees
/// the table missing.
async fn swap_sqlite(
    db: &SchemaManagerConnection<'_>,
    create: &str,
    copy: &str,
) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "SAVEPOINT signals_rebuild; {create}; {copy}; DROP TABLE signals; \
         ALTER TABLE signals_rebuilt RENAME TO signals; \
         CREATE INDEX IF NOT EXISTS idx_signals_tenant_arrival ON signals (tenant_id); \
         RELEASE signals_rebuild;"
    ))
    .await?;
    Ok(())
}

/// PostgreSQL, before the ids change: every subscription position (and
/// pending batch end) that names a Signal names its new id instead.
async fn move_positions(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, position, pending_end FROM subscriptions",
        ))
        .await?;
    for row in rows {
        let id: uuid::Uuid = row.try_get("", "id")?;
        for column in ["position", "pending_end"] {
            let Some(text) = row.try_get::<Option<String>>("", column)? else {
                continue;
            };
            let Some((xid, old)) = xact_position(&text) else {
                continue;
            };
            let new = db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!("SELECT {PG_NEW_ID} AS id FROM signals WHERE id = $1"),
                    [old.into()],
                ))
                .await?
                .map(|r| r.try_get::<uuid::Uuid>("", "id"))
                .transpose()?
                .unwrap_or(uuid::Uuid::nil());
            let moved = URL_SAFE_NO_PAD.encode(format!("a1.x.{xid}.{}", new.simple()));
            db.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("UPDATE subscriptions SET {column} = $1 WHERE id = $2"),
                [moved.into(), id.into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// The transaction and Signal id of a PostgreSQL arrival position's text
/// (`a1.x.<xid>.<id>`, base64url); `None` for anything else.
fn xact_position(text: &str) -> Option<(u64, uuid::Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('.');
    if (parts.next()?, parts.next()?) != ("a1", "x") {
        return None;
    }
    let xid = parts.next()?.parse().ok()?;
    let id = uuid::Uuid::try_parse(parts.next()?).ok()?;
    parts.next().is_none().then_some((xid, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_order_by_time_and_read_stored_times() {
        let key = "fe7615b80cfe44098e289d8ef8549332318b069b0dee4d65192480b91d07f630";
        let id = new_id(0, key).unwrap();
        assert_eq!(id[..8], [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(id[8..], [0xfe, 0x76, 0x15, 0xb8, 0x0c, 0xfe, 0x44, 0x09]);
        assert!(new_id(-1, key).unwrap() < id && id < new_id(1, key).unwrap());
        assert!(new_id(0, "xyz").is_err());
        for text in [
            "2024-01-01T00:00:00.000001+00:00",
            "2024-01-01 00:00:00.000001+00:00",
            "2024-01-01 00:00:00.000001",
        ] {
            assert_eq!(
                sqlite_micros(text).unwrap(),
                1_704_067_200_000_001,
                "{text}"
            );
        }
        let text = URL_SAFE_NO_PAD.encode(format!("a1.x.42.{}", uuid::Uuid::max().simple()));
        assert_eq!(xact_position(&text), Some((42, uuid::Uuid::max())));
        assert_eq!(xact_position(&URL_SAFE_NO_PAD.encode("a1.r.7")), None);
    }
}
