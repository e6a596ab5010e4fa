//! `migrate status|down|up` on both backends.

use crate::harness::{Backend, Server, command};

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
    let all_applied =
        "Applied\tm20261122_000001_initial\nApplied\tm20261122_000002_one_running_job";
    assert_eq!(migrate(&["status"]).trim(), all_applied);
    assert!(migrate(&["down", "--steps", "2"]).contains("reverted 2"));
    assert_eq!(
        migrate(&["status"]).trim(),
        "Pending\tm20261122_000001_initial\nPending\tm20261122_000002_one_running_job"
    );
    assert!(migrate(&["up"]).contains("applied"));
    assert_eq!(migrate(&["status"]).trim(), all_applied);
}

#[tokio::test]
async fn down_and_up_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test]
async fn down_and_up_postgres() {
    run(Backend::Postgres).await;
}
