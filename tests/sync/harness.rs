//! An in-process node: services over a fresh database, the API router, and
//! executors to step.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use http::Request;
use poblysh_connectors::app::Builder;
use poblysh_connectors::config::Config;
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::services::Services;
use poblysh_connectors::sync::executor::{Executor, ExecutorSettings};
use poblysh_connectors::sync::queue::QueueSettings;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

use crate::pg;

pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const TOKEN: &str = "sync-test-operator-token-0123";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Node {
    pub services: Arc<Services>,
    pub router: axum::Router,
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}/sync.db?mode=rwc", dir.path().display()),
                Some(dir),
            )
        }
        Backend::Postgres => (pg::fresh_database(), None),
    }
}

impl Node {
    pub async fn new(backend: Backend, allow_private: bool, env: &[(&str, &str)]) -> Node {
        let (url, dir) = database(backend).await;
        let mut node = Node::on(&url, allow_private, env).await;
        node._dir = dir;
        node
    }

    /// A node on an existing database (several nodes can share PostgreSQL).
    pub async fn on(database_url: &str, allow_private: bool, env: &[(&str, &str)]) -> Node {
        Node::build(database_url, allow_private, env, |b| b).await
    }

    /// A node on an existing database, put together by the app builder
    /// adjusted by `adjust`.
    #[allow(dead_code)]
    pub async fn on_with(
        database_url: &str,
        env: &[(&str, &str)],
        adjust: impl FnOnce(Builder) -> Builder,
    ) -> Node {
        Node::build(database_url, true, env, adjust).await
    }

    /// A node on `backend` put together by the app builder, adjusted by `adjust`
    /// (a clock, a native connector).
    #[allow(dead_code)]
    pub async fn with(
        backend: Backend,
        env: &[(&str, &str)],
        adjust: impl FnOnce(Builder) -> Builder,
    ) -> Node {
        let (url, dir) = database(backend).await;
        let mut node = Node::build(&url, true, env, adjust).await;
        node._dir = dir;
        node
    }

    async fn build(
        database_url: &str,
        allow_private: bool,
        env: &[(&str, &str)],
        adjust: impl FnOnce(Builder) -> Builder,
    ) -> Node {
        let mut vars: BTreeMap<&str, &str> = env.iter().copied().collect();
        vars.insert("POBLYSH_CRYPTO_KEY", KEY);
        vars.insert("POBLYSH_OPERATOR_TOKENS", TOKEN);
        vars.insert("DATABASE_URL", database_url);
        if allow_private {
            vars.insert("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true");
        }
        let config = Config::from_map(&vars).unwrap();
        let node = adjust(Builder::new(config).builtins(Vec::new()))
            .build()
            .await
            .unwrap();
        Node {
            router: node.router(),
            services: Arc::clone(&node.services),
            database_url: database_url.to_owned(),
            _dir: None,
        }
    }

    /// Compiles a descriptor (it must be valid) and registers it.
    pub fn register(&self, yaml: &str) {
        let compiled =
            load_str("<test descriptor>", yaml, Format::Yaml).unwrap_or_else(|d| panic!("{d:#?}"));
        self.services.registry.insert(compiled, false).unwrap();
    }

    pub async fn connection(
        &self,
        tenant: TenantId,
        provider: &str,
        credentials: &[(&str, &str)],
        config: Value,
    ) -> ConnectionId {
        connections::create(
            &self.services.db,
            &self.services.keys,
            tenant,
            NewConnection {
                provider: provider.to_owned(),
                name: None,
                config,
                credentials: credentials
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
                    .collect(),
                tokens: None,
            },
        )
        .await
        .unwrap()
        .id
    }

    pub fn executor(&self, worker: &str) -> Executor {
        Executor::new(
            Arc::clone(&self.services),
            ExecutorSettings {
                worker_id: worker.to_owned(),
                queue: QueueSettings {
                    initial_backoff: chrono::Duration::milliseconds(10),
                    tenant_concurrency: 100,
                    ..QueueSettings::default()
                },
                concurrency: 1,
                idle: std::time::Duration::from_millis(20),
            },
        )
    }

    /// Calls the API in process as the operator.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        tenant: Option<TenantId>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, path, true, tenant, body).await
    }

    /// Calls a public route (no operator token), as a browser would.
    pub async fn public(&self, method: &str, path: &str) -> (u16, Value) {
        self.call(method, path, false, None, None).await
    }

    /// Sends a request as built (raw body, any headers): status, headers, body.
    #[allow(dead_code)]
    pub async fn send(&self, req: Request<Body>) -> (u16, http::HeaderMap, Vec<u8>) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, bytes.to_vec())
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        operator: bool,
        tenant: Option<TenantId>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if operator {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t.to_string());
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// Runs the test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: $crate::sync::harness::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run($crate::sync::harness::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run($crate::sync::harness::Backend::Postgres).await;
            }
        }
    };
}

/// The tenant's Signals as (kind, external id), sorted.
pub async fn signals(node: &Node, tenant: TenantId) -> Vec<(String, String)> {
    let (status, body) = node
        .api("GET", "/signals?limit=100", Some(tenant), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut out = kinds_and_ids(&body["signals"]);
    out.sort();
    out
}

/// (kind, external id) of each Signal in a JSON list of them (an API page, a
/// golden file's `signals`), in order.
pub fn kinds_and_ids(signals: &Value) -> Vec<(String, String)> {
    signals
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_owned(),
                s["external_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs every due job; (job type, state) of each, in order.
pub async fn drain(node: &Node) -> Vec<(String, poblysh_connectors::db::repo::jobs::JobState)> {
    let executor = node.executor("w");
    let mut ran = Vec::new();
    while let Some(report) = executor.try_execute_next().await.unwrap() {
        ran.push((report.job_type.as_str().to_owned(), report.state));
        assert!(ran.len() < 50, "the queue does not drain: {ran:?}");
    }
    ran
}

/// A connection as its tenant's repository reads it (it must exist).
pub async fn get_connection(
    node: &Node,
    tenant: TenantId,
    id: ConnectionId,
) -> connections::Connection {
    connections::get(&node.services.db, tenant, id)
        .await
        .unwrap()
        .unwrap()
}
