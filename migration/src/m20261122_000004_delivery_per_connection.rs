//! Webhook delivery ids are unique per connection, not per provider: a provider
//! delivers the same event (same id) to every subscription that asked for it
//! (two tenants following one PagerDuty service or Trello board), and each of
//! them must get it once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ux_webhook_deliveries_provider_delivery")
            .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_webhook_deliveries_connection_delivery \
             ON webhook_deliveries (provider, connection_id, delivery_id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ux_webhook_deliveries_connection_delivery")
            .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_webhook_deliveries_provider_delivery \
             ON webhook_deliveries (provider, delivery_id)",
        )
        .await?;
        Ok(())
    }
}
