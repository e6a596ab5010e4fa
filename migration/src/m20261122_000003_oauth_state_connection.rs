//! An OAuth state also carries the label and config of the connection it will
//! create, so the callback needs nothing but `code` and `state`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("oauth_states")
                .add_column(text_null("connection_name"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("oauth_states")
                .add_column(json_binary_null("connection_config"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["connection_config", "connection_name"] {
            m.alter_table(
                Table::alter()
                    .table("oauth_states")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
