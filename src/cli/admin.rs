//! `openapi`, `migrate` and `keys`: operator commands around the service.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use migration::{Migrator, MigratorTrait};

use crate::config::{Config, redact_url};
use crate::db::Db;
use crate::db::repo::keys::reencrypt_all;

/// `migrate` subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Apply every pending migration.
    Up,
    /// Revert the last migration(s).
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether they are applied.
    Status,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every stored secret under POBLYSH_CRYPTO_KEY (keys in
    /// POBLYSH_CRYPTO_PREVIOUS_KEYS open the old ones). Safe while the service runs.
    Reencrypt,
}

/// Prints the OpenAPI document.
pub fn openapi() -> anyhow::Result<ExitCode> {
    println!("{}", crate::api::openapi().to_pretty_json()?);
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn open(config: &Config) -> anyhow::Result<Db> {
    Db::connect(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            redact_url(&config.database_url)
        )
    })
}

/// Runs a migration command.
pub fn migrate(command: &MigrateCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    runtime()?.block_on(async {
        let db = open(&config).await?;
        match command {
            MigrateCommand::Up => {
                Migrator::up(db.conn(), None).await?;
                println!("migrations applied");
            }
            MigrateCommand::Down { steps } => {
                Migrator::down(db.conn(), Some(*steps)).await?;
                println!("reverted {steps} migration(s)");
            }
            MigrateCommand::Status => {
                for m in Migrator::get_migration_with_status(db.conn()).await? {
                    println!("{}\t{}", m.status(), m.name());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs a key command.
pub fn keys(command: &KeysCommand) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    let config = Config::from_env()?;
    match command {
        KeysCommand::Reencrypt => runtime()?.block_on(async {
            let keys = crate::app::key_ring(&config)?;
            let db = open(&config).await?;
            db.migrate().await?;
            let report = reencrypt_all(&db, &keys).await?;
            println!(
                "checked {} sealed value(s): {} re-sealed under key {}, {} changed concurrently (run again)",
                report.checked,
                report.resealed,
                keys.primary_id(),
                report.skipped_concurrent
            );
            Ok(if report.skipped_concurrent == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
    }
}
