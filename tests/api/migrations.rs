//! `migrate status|down|up` on both backends.

use crate::api::harness::{Backend, Server, command};

async fn run(backend: Backend) {
    let server = Server::start(backend).await;
    let migrate = |args: &[&str]| {
        let out = command(server.dir.path(), &server.database_url)
            .arg("migrate")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    const NAMES: [&str; 13] = [
        "m20261122_000001_initial",
        "m20261122_000002_one_running_job",
        "m20261122_000003_oauth_state_connection",
        "m20261122_000004_delivery_per_connection",
        "m20261201_000005_connection_renewal",
        "m20261201_000006_job_progress",
        "m20261201_000007_signal_indexes",
        "m20261201_000008_signal_dedupe_by_time",
        "m20261201_000009_zoho_cliq_region",
        "m20261202_000010_dashboard",
        "m20261202_000011_operations",
        "m20261202_000012_push",
        "m20261203_000013_signal_ids",
    ];
    let listing = |state: &str| NAMES.map(|n| format!("{state}\t{n}")).join("\n");
    assert_eq!(migrate(&["status"]).trim(), listing("Applied"));
    assert!(migrate(&["down", "--steps", "13"]).contains("reverted 13"));
    assert_eq!(migrate(&["status"]).trim(), listing("Pending"));
    assert!(migrate(&["up"]).contains("applied"));
    assert_eq!(migrate(&["status"]).trim(), listing("Applied"));
}

#[tokio::test]
async fn down_and_up_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test]
async fn down_and_up_postgres() {
    run(Backend::Postgres).await;
}
