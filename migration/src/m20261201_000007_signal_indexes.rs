//! Signal indexes that match every filter combination of `GET /signals`, each
//! ending in `(occurred_at, id)` so a page is one index range in keyset order:
//! by tenant; tenant + provider; tenant + provider + kind; tenant + kind; and
//! tenant + connection (a connection implies its provider). They replace the
//! `(tenant, provider, kind, occurred_at)` index (no `id`: a sort per page) and
//! the bare `connection_id` one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_signals_tenant_provider_time ON signals (tenant_id, provider, occurred_at, id)",
    "CREATE INDEX IF NOT EXISTS idx_signals_tenant_provider_kind_time_id ON signals (tenant_id, provider, kind, occurred_at, id)",
    "CREATE INDEX IF NOT EXISTS idx_signals_tenant_kind_time ON signals (tenant_id, kind, occurred_at, id)",
    "CREATE INDEX IF NOT EXISTS idx_signals_tenant_connection_time ON signals (tenant_id, connection_id, occurred_at, id)",
    "DROP INDEX IF EXISTS idx_signals_tenant_provider_kind_time",
    "DROP INDEX IF EXISTS idx_signals_connection",
];

const REVERT: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_signals_tenant_provider_kind_time ON signals (tenant_id, provider, kind, occurred_at)",
    "CREATE INDEX IF NOT EXISTS idx_signals_connection ON signals (connection_id)",
    "DROP INDEX IF EXISTS idx_signals_tenant_provider_time",
    "DROP INDEX IF EXISTS idx_signals_tenant_provider_kind_time_id",
    "DROP INDEX IF EXISTS idx_signals_tenant_kind_time",
    "DROP INDEX IF EXISTS idx_signals_tenant_connection_time",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for sql in CREATE {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for sql in REVERT {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
