//! Zoho Cliq connections name their data centre as `region` (a select of
//! known codes) instead of free `baseUrl`/`accountsUrl` URLs, which could have
//! sent the OAuth token and the app's client secret to any host. A connection
//! that set them gets the region its URLs named (by host; `us` for anything
//! else) and loses the URL keys, so it keeps calling its own data centre.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `region` from a URL column expression: the first known host it contains.
fn region_of(url: &str) -> String {
    let hosts = [
        ("zoho.com.au", "au"),
        ("zoho.com.cn", "cn"),
        ("zohocloud.ca", "ca"),
        ("zoho.eu", "eu"),
        ("zoho.in", "in"),
        ("zoho.jp", "jp"),
        ("zoho.sa", "sa"),
        ("zoho.uk", "uk"),
    ];
    let cases: String = hosts
        .iter()
        .map(|(host, code)| format!(" WHEN lower({url}) LIKE '%.{host}%' THEN '{code}'"))
        .collect();
    format!("CASE{cases} ELSE 'us' END")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let sql = match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                let url = "COALESCE(NULLIF(config->>'accountsUrl', ''), config->>'baseUrl')";
                format!(
                    "UPDATE connections SET config = (config - 'baseUrl' - 'accountsUrl') \
                     || jsonb_build_object('region', {}) \
                     WHERE provider_id = 'zoho_cliq' AND (config ? 'baseUrl' OR config ? 'accountsUrl')",
                    region_of(url)
                )
            }
            _ => {
                let url = "COALESCE(NULLIF(json_extract(config, '$.accountsUrl'), ''), json_extract(config, '$.baseUrl'))";
                format!(
                    "UPDATE connections SET config = json_set(json_remove(config, '$.baseUrl', '$.accountsUrl'), '$.region', {}) \
                     WHERE provider_id = 'zoho_cliq' AND (json_extract(config, '$.baseUrl') IS NOT NULL OR json_extract(config, '$.accountsUrl') IS NOT NULL)",
                    region_of(url)
                )
            }
        };
        m.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    /// The region stays: the old URL keys are not needed to run.
    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
