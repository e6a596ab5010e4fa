//! Encryption at rest: stored credentials contain no plaintext; `keys reencrypt`
//! moves every secret to the new key (the old key alone no longer opens them);
//! a ciphertext copied onto another connection does not open.

use poblysh_connectors::crypto::{CryptoError, KeyRing};
use poblysh_connectors::db::StoreError;
use poblysh_connectors::db::entities::connection;
use poblysh_connectors::db::repo::connections;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use reqwest::Method;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use crate::api::harness::{self, Backend, KEY, Server, send};
use crate::on_both_backends;

const NEW_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const SECRETS: [&str; 3] = [
    "ghp_plain_secret_one",
    "lin_api_plain_two",
    "ghp_plain_secret_three",
];

async fn create(server: &Server, tenant: Uuid, provider: &str, secret: &str) -> ConnectionId {
    let body = match provider {
        "github" => {
            json!({"provider": "github", "credentials": {"token": secret}, "config": {"repos": ["a/b"]}})
        }
        _ => json!({"provider": "linear", "credentials": {"apiKey": secret}}),
    };
    let (status, created) = send(
        server
            .tenant(tenant, Method::POST, "/connections")
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    ConnectionId::from_uuid(created["id"].as_str().unwrap().parse().unwrap())
}

/// Every byte the database holds for the connections table.
async fn raw_storage(server: &Server, backend: Backend) -> Vec<u8> {
    match backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(server.dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("test.db")
                {
                    bytes.extend(std::fs::read(path).unwrap());
                }
            }
            assert!(bytes.len() > 4096);
            bytes
        }
        Backend::Postgres => {
            let out = std::process::Command::new("psql")
                .arg(&server.database_url)
                .args([
                    "-At",
                    "-c",
                    "SELECT row_to_json(c)::text FROM connections c",
                ])
                .output()
                .unwrap();
            assert!(out.status.success());
            out.stdout
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn run(backend: Backend) {
    let server = Server::start(backend).await;
    let tenant = Uuid::now_v7();
    let ids = [
        create(&server, tenant, "github", SECRETS[0]).await,
        create(&server, tenant, "linear", SECRETS[1]).await,
        create(&server, tenant, "github", SECRETS[2]).await,
    ];
    let raw = raw_storage(&server, backend).await;
    assert!(contains(&raw, "a/b"), "the check can see plaintext config");
    for secret in SECRETS {
        assert!(!contains(&raw, secret), "{secret} is stored in plaintext");
    }

    let db = server.db().await;
    let t = TenantId::from_uuid(tenant);
    let old = KeyRing::new(KEY, &[]).unwrap();
    let creds = connections::credentials(&db, &old, t, ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds["apiKey"].expose_secret(), SECRETS[1]);

    // Rotate: the new key is primary, the old one only opens.
    let out = harness::command(server.dir.path(), &server.database_url)
        .env("POBLYSH_CRYPTO_KEY", NEW_KEY)
        .env("POBLYSH_CRYPTO_PREVIOUS_KEYS", KEY)
        .args(["keys", "reencrypt"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 re-sealed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let new_only = KeyRing::new(NEW_KEY, &[]).unwrap();
    for (id, secret) in ids.iter().zip(SECRETS) {
        let creds = connections::credentials(&db, &new_only, t, *id)
            .await
            .unwrap()
            .unwrap();
        assert!(creds.values().any(|v| v.expose_secret() == secret));
        let err = connections::credentials(&db, &old, t, *id)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Crypto(CryptoError::UnknownKey(_))),
            "{err}"
        );
    }
    // A second pass has nothing left to do.
    let out = harness::command(server.dir.path(), &server.database_url)
        .env("POBLYSH_CRYPTO_KEY", NEW_KEY)
        .args(["keys", "reencrypt"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 re-sealed"));

    // A ciphertext copied onto another connection's row does not open there.
    let row0 = connection::Entity::find_by_id(*ids[0].as_uuid())
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    let row2 = connection::Entity::find_by_id(*ids[2].as_uuid())
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    let mut forged: connection::ActiveModel = row2.into();
    forged.credentials = Set(row0.credentials.clone());
    forged.update(db.conn()).await.unwrap();
    let err = connections::credentials(&db, &new_only, t, ids[2])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::Inauthentic)),
        "{err}"
    );
    // And not for another tenant either.
    let other = TenantId::from_uuid(Uuid::now_v7());
    assert!(
        connections::credentials(&db, &new_only, other, ids[0])
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn secrets_at_rest_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test]
async fn secrets_at_rest_postgres() {
    run(Backend::Postgres).await;
}

on_both_backends! {
    async fn a_malformed_key_stops_start_up_clearly(server) {
        // The shared server is unused here; start-up with a bad key is checked on its directory.
        let out = harness::command(server.dir.path(), &server.database_url)
            .env("POBLYSH_CRYPTO_KEY", "not-a-key")
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("POBLYSH_CRYPTO_KEY is not a valid key"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let out = harness::command(server.dir.path(), &server.database_url)
            .env_remove("POBLYSH_CRYPTO_KEY")
            .env("POBLYSH_ENV", "production")
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("POBLYSH_CRYPTO_KEY is not set"));
    }
}
