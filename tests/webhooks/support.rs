//! Signing like the providers do, and posting raw deliveries to a node.

use axum::body::Body;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use http::Request;
use poblysh_connectors::db::entities::webhook_delivery;
use poblysh_connectors::domain::TenantId;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::Value;

use crate::sync::harness::Node;

/// HMAC-SHA256 of `parts` in order, lowercase hex.
pub fn hmac_sha256_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA1 of `parts` in order, standard base64 (Trello).
pub fn hmac_sha1_base64(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts `body` with `headers` to `path`: status, JSON (or text) answer and headers.
pub async fn post(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value, http::HeaderMap) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let (status, headers, bytes) = node.send(req.body(Body::from(body)).unwrap()).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value, headers)
}

/// The tenant's signals, newest first (kinds and external ids).
pub async fn signals(node: &Node, tenant: TenantId) -> Vec<Value> {
    let (status, body) = node
        .api(
            "GET",
            "/signals?limit=100&include_payload=true",
            Some(tenant),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["signals"].as_array().unwrap().clone()
}

/// The kinds of the tenant's signals, sorted.
pub async fn kinds(node: &Node, tenant: TenantId) -> Vec<String> {
    let mut kinds: Vec<String> = signals(node, tenant)
        .await
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// Rows in `webhook_deliveries`.
pub async fn deliveries(node: &Node) -> u64 {
    webhook_delivery::Entity::find()
        .count(node.services.db.conn())
        .await
        .unwrap()
}

/// A fixture's bytes, as stored.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("fixtures/{path}")).unwrap_or_else(|e| panic!("fixtures/{path}: {e}"))
}
