//! What running for months across nodes needs: named leases (one node at a
//! time runs the pruning), per-tenant settings (a job concurrency of its own),
//! indexes to prune finished jobs by when they finished and to find recent
//! full syncs, and when each
//! connection stored its first Signal (time-to-first-signal).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("connections")
                .add_column(timestamp_with_time_zone_null("first_signal_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("leases")
                .if_not_exists()
                .col(string("name").primary_key())
                .col(string("holder"))
                .col(timestamp_with_time_zone("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("tenant_settings")
                .if_not_exists()
                .col(uuid("tenant_id").primary_key())
                .col(integer_null("job_concurrency"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_sync_jobs_finished")
                .table("sync_jobs")
                .if_not_exists()
                .col("finished_at")
                .to_owned(),
        )
        .await?;
        // The scheduler's recent full syncs: one range of one job type.
        m.create_index(
            Index::create()
                .name("idx_sync_jobs_type_finished")
                .table("sync_jobs")
                .if_not_exists()
                .col("job_type")
                .col("finished_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_sync_jobs_type_finished")
                .table("sync_jobs")
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_sync_jobs_finished")
                .table("sync_jobs")
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("tenant_settings").to_owned())
            .await?;
        m.drop_table(Table::drop().table("leases").to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table("connections")
                .drop_column("first_signal_at")
                .to_owned(),
        )
        .await
    }
}
