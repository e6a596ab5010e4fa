//! When a connection's lifecycle hook asked to be renewed (a watch channel
//! before it expires): the scheduler enqueues a renewal once it is due.

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
                .add_column(timestamp_with_time_zone_null("renew_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("connections")
                .drop_column("renew_at")
                .to_owned(),
        )
        .await
    }
}
