//! The dedupe key's unique index leads with the occurrence time:
//! `(tenant_id, occurred_at, dedupe_key)` instead of `(tenant_id, dedupe_key)`.
//! The key is a hash that includes the occurrence time, so two Signals with
//! the same key have the same time and the constraint is the same; but a hash
//! puts every insert on a random page of the index, while a sync or a webhook
//! stream stores Signals in roughly time order, so the new index is written
//! (and its pages cached, and logged) where the last ones were.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_signals_tenant_time_dedupe ON signals (tenant_id, occurred_at, dedupe_key)",
    "DROP INDEX IF EXISTS ux_signals_tenant_dedupe",
];

const DOWN: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_signals_tenant_dedupe ON signals (tenant_id, dedupe_key)",
    "DROP INDEX IF EXISTS ux_signals_tenant_time_dedupe",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for sql in UP {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for sql in DOWN {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
