//! Database migrations of Poblysh Connectors. Every migration runs on SQLite
//! (the embedded default) and PostgreSQL (production).

pub use sea_orm_migration::prelude::MigratorTrait;
use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_one_running_job;
mod m20261122_000003_oauth_state_connection;
mod m20261122_000004_delivery_per_connection;
mod m20261201_000005_connection_renewal;
mod m20261201_000006_job_progress;
mod m20261201_000007_signal_indexes;
mod m20261201_000008_signal_dedupe_by_time;
mod m20261201_000009_zoho_cliq_region;
mod m20261202_000010_dashboard;
mod m20261202_000011_operations;
mod m20261202_000012_push;
mod m20261203_000013_signal_ids;

/// All migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_one_running_job::Migration),
            Box::new(m20261122_000003_oauth_state_connection::Migration),
            Box::new(m20261122_000004_delivery_per_connection::Migration),
            Box::new(m20261201_000005_connection_renewal::Migration),
            Box::new(m20261201_000006_job_progress::Migration),
            Box::new(m20261201_000007_signal_indexes::Migration),
            Box::new(m20261201_000008_signal_dedupe_by_time::Migration),
            Box::new(m20261201_000009_zoho_cliq_region::Migration),
            Box::new(m20261202_000010_dashboard::Migration),
            Box::new(m20261202_000011_operations::Migration),
            Box::new(m20261202_000012_push::Migration),
            Box::new(m20261203_000013_signal_ids::Migration),
        ]
    }
}
