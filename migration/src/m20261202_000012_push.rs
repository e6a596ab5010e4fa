//! Signals out: each Signal's arrival position (what push delivery and the live
//! stream walk, in the order Signals were committed, not the order they
//! occurred), and the subscriptions pushed to.
//!
//! The arrival position: on PostgreSQL the id of the transaction that stored
//! the Signal (`xid8`, `pg_current_xact_id()`), then the Signal id; a reader
//! passes only transactions older than every one still in flight
//! (`pg_snapshot_xmin`), so a transaction that commits late cannot fill a
//! position already passed. On SQLite the rowid: one writer at a time, so
//! rowids grow in commit order.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE signals ADD COLUMN arrival_xid xid8 NOT NULL \
                 DEFAULT pg_current_xact_id()",
            )
            .await?;
            db.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_signals_tenant_arrival \
                 ON signals (tenant_id, arrival_xid, id)",
            )
            .await?;
        } else {
            // An index's entries end with the rowid: (tenant_id, rowid).
            db.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_signals_tenant_arrival ON signals (tenant_id)",
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table("subscriptions")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("tenant_id"))
                .col(text("url"))
                .col(string_null("provider"))
                .col(uuid_null("connection_id"))
                .col(json_binary_null("kinds"))
                .col(boolean("include_payload").default(false))
                .col(binary("secret"))
                .col(binary_null("previous_secret"))
                .col(timestamp_with_time_zone_null("previous_until"))
                .col(boolean("enabled").default(true))
                .col(string("state").default("active"))
                .col(string("position"))
                .col(string_null("pending_end"))
                .col(string_null("pending_id"))
                .col(json_binary_null("pending_signals"))
                .col(integer("failures").default(0))
                .col(timestamp_with_time_zone_null("next_attempt_at"))
                .col(integer_null("last_status"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone_null("last_attempt_at"))
                .col(timestamp_with_time_zone_null("last_delivered_at"))
                .col(big_integer("delivered").default(0))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_subscriptions_tenant")
                .table("subscriptions")
                .if_not_exists()
                .col("tenant_id")
                .col("id")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("subscriptions").to_owned())
            .await?;
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_signals_tenant_arrival")
            .await?;
        if m.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("ALTER TABLE signals DROP COLUMN arrival_xid")
                .await?;
        }
        Ok(())
    }
}
