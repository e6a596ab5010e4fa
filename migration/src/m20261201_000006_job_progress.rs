//! A sync run commits as it goes: `progress` is where an interrupted run
//! resumes (written with the Signals it covers), and `reclaims` counts how
//! often a job's worker stopped without finishing it (a crash, not a provider
//! error: it spends no attempt, and a job that keeps doing it is quarantined).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("sync_jobs")
                .add_column(text_null("progress"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("sync_jobs")
                .add_column(integer("reclaims").default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["reclaims", "progress"] {
            m.alter_table(
                Table::alter()
                    .table("sync_jobs")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
