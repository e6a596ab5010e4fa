//! The initial schema: providers, connections, sync cursors, sync jobs, signals,
//! webhook deliveries and OAuth states (DESIGN.md §4). Timestamps are always
//! written by the service (never `CURRENT_TIMESTAMP`), so they compare correctly
//! as text on SQLite.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("providers")
                .if_not_exists()
                .col(text("id").primary_key())
                .col(text("name"))
                .col(text("kind"))
                .col(boolean("built_in"))
                .col(json_binary("descriptor"))
                .col(text("version"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("connections")
                .if_not_exists()
                .col(pk_uuid("id"))
                .col(uuid("tenant_id"))
                .col(text("provider_id"))
                .col(text_null("name"))
                .col(text("status"))
                .col(boolean("enabled"))
                .col(json_binary("config"))
                .col(blob_null("credentials"))
                .col(blob_null("access_token"))
                .col(blob_null("refresh_token"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(json_binary("metadata"))
                .col(timestamp_with_time_zone_null("last_health_check"))
                .col(boolean_null("healthy"))
                .col(integer("consecutive_failures").default(0))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "idx_connections_tenant",
            "connections",
            &["tenant_id"],
            false,
        )
        .await?;
        index(
            m,
            "idx_connections_provider",
            "connections",
            &["provider_id"],
            false,
        )
        .await?;

        m.create_table(
            Table::create()
                .table("sync_cursors")
                .if_not_exists()
                .col(uuid("connection_id"))
                .col(text("stream"))
                .col(uuid("tenant_id"))
                .col(text_null("checkpoint"))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(Index::create().col("connection_id").col("stream"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_sync_cursors_connection")
                        .from("sync_cursors", "connection_id")
                        .to("connections", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("sync_jobs")
                .if_not_exists()
                .col(pk_uuid("id"))
                .col(uuid("tenant_id"))
                .col(uuid("connection_id"))
                .col(text("provider_id"))
                .col(text("job_type"))
                .col(text("trigger"))
                .col(text("state"))
                .col(integer("attempt").default(0))
                .col(timestamp_with_time_zone("run_after"))
                .col(text_null("lease_owner"))
                .col(timestamp_with_time_zone_null("lease_expires_at"))
                .col(text_null("cursor_before"))
                .col(text_null("cursor_after"))
                .col(big_integer("signals_emitted").default(0))
                .col(text_null("error"))
                .col(text("idempotency_key").unique_key())
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_sync_jobs_connection")
                        .from("sync_jobs", "connection_id")
                        .to("connections", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        index_desc(
            m,
            "idx_sync_jobs_tenant_created",
            "sync_jobs",
            "tenant_id",
            &["created_at", "id"],
        )
        .await?;
        index(
            m,
            "idx_sync_jobs_state_run_after",
            "sync_jobs",
            &["state", "run_after"],
            false,
        )
        .await?;
        index(
            m,
            "idx_sync_jobs_connection",
            "sync_jobs",
            &["connection_id"],
            false,
        )
        .await?;

        m.create_table(
            Table::create()
                .table("signals")
                .if_not_exists()
                .col(pk_uuid("id"))
                .col(uuid("tenant_id"))
                .col(uuid("connection_id"))
                .col(text("provider"))
                .col(text("kind"))
                .col(timestamp_with_time_zone("occurred_at"))
                .col(timestamp_with_time_zone("received_at"))
                .col(text("external_id"))
                .col(text("summary"))
                .col(text_null("priority"))
                .col(json_binary("participants"))
                .col(json_binary("tags"))
                .col(json_binary("related"))
                .col(text_null("url"))
                .col(json_binary("payload"))
                .col(text("dedupe_key"))
                .to_owned(),
        )
        .await?;
        index_desc(
            m,
            "idx_signals_tenant_time",
            "signals",
            "tenant_id",
            &["occurred_at", "id"],
        )
        .await?;
        index(
            m,
            "idx_signals_tenant_provider_kind_time",
            "signals",
            &["tenant_id", "provider", "kind", "occurred_at"],
            false,
        )
        .await?;
        index(
            m,
            "ux_signals_tenant_dedupe",
            "signals",
            &["tenant_id", "dedupe_key"],
            true,
        )
        .await?;
        index(
            m,
            "idx_signals_connection",
            "signals",
            &["connection_id"],
            false,
        )
        .await?;

        m.create_table(
            Table::create()
                .table("webhook_deliveries")
                .if_not_exists()
                .col(pk_uuid("id"))
                .col(text("provider"))
                .col(uuid_null("tenant_id"))
                .col(uuid_null("connection_id"))
                .col(text("delivery_id"))
                .col(timestamp_with_time_zone("received_at"))
                .col(text("outcome"))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "ux_webhook_deliveries_provider_delivery",
            "webhook_deliveries",
            &["provider", "delivery_id"],
            true,
        )
        .await?;

        m.create_table(
            Table::create()
                .table("oauth_states")
                .if_not_exists()
                .col(text("state_hash").primary_key())
                .col(uuid("id"))
                .col(uuid("tenant_id"))
                .col(text("provider"))
                .col(blob_null("pkce_verifier"))
                .col(text_null("redirect"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "oauth_states",
            "webhook_deliveries",
            "signals",
            "sync_jobs",
            "sync_cursors",
            "connections",
            "providers",
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn index(
    m: &SchemaManager<'_>,
    name: &str,
    table: &'static str,
    columns: &[&'static str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for c in columns {
        index.col(*c);
    }
    if unique {
        index.unique();
    }
    m.create_index(index.to_owned()).await
}

/// An index on `lead` then `desc` columns in descending order (newest first).
async fn index_desc(
    m: &SchemaManager<'_>,
    name: &str,
    table: &'static str,
    lead: &'static str,
    desc: &[&'static str],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists().col(lead);
    for c in desc {
        index.col((*c, IndexOrder::Desc));
    }
    m.create_index(index.to_owned()).await
}
