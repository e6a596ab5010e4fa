//! At most one running job per connection, enforced by the database, so several
//! workers (or nodes) can never sync the same connection at once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A partial unique index: the same SQL on SQLite and PostgreSQL.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_sync_jobs_running_connection \
                 ON sync_jobs (connection_id) WHERE state = 'running'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ux_sync_jobs_running_connection")
            .await?;
        Ok(())
    }
}
