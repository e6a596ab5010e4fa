//! What the dashboard and its API need: a connection's last sync (when, how it
//! ended, how long it took), an index for a connection's recent jobs, the
//! dashboard's server-side sessions (keyed by a digest of the cookie's id),
//! and the connection an OAuth flow re-authorizes in place.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null("last_sync_at"),
            string_null("last_sync_status"),
            big_integer_null("last_sync_ms"),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table("connections")
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table("oauth_states")
                .add_column(uuid_null("connection_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_sync_jobs_tenant_connection_created")
                .table("sync_jobs")
                .if_not_exists()
                .col("tenant_id")
                .col("connection_id")
                .col("created_at")
                .col("id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("ui_sessions")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(text("data"))
                .col(timestamp_with_time_zone("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_ui_sessions_expires")
                .table("ui_sessions")
                .if_not_exists()
                .col("expires_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("ui_sessions").to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("idx_sync_jobs_tenant_connection_created")
                .table("sync_jobs")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("oauth_states")
                .drop_column("connection_id")
                .to_owned(),
        )
        .await?;
        for column in ["last_sync_ms", "last_sync_status", "last_sync_at"] {
            m.alter_table(
                Table::alter()
                    .table("connections")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
