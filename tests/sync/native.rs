//! The executor runs whatever `Connector` the registry holds: a native connector
//! registered next to its descriptor gets the same queue, sink, transaction and
//! checkpoint handling as a descriptor-driven one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use poblysh_connectors::connector::{
    Capabilities, Catalogue, ConnectionContext, Connector, ConnectorError, DescriptorConnector,
    SyncMode,
};
use poblysh_connectors::db::repo::cursors;
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::engine::health::HealthResult;
use poblysh_connectors::engine::poll::{Checkpoints, PollOutcome, SignalSink};
use poblysh_connectors::sync::scheduler;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};

/// A "native" connector: fetches through an inner connector, then answers with
/// its own checkpoint, and counts its calls.
#[derive(Debug)]
struct Native {
    inner: DescriptorConnector,
    syncs: AtomicUsize,
}

#[async_trait]
impl Connector for Native {
    fn id(&self) -> &str {
        "native"
    }
    fn catalogue(&self) -> &Catalogue {
        self.inner.catalogue()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let mut outcome = self.inner.sync(ctx, mode, checkpoints, sink).await?;
        outcome.checkpoints = [(String::new(), Some(format!("history-{n}")))].into();
        Ok(outcome)
    }
    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        self.inner.health_check(ctx).await
    }
}

crate::on_both! {
    async fn the_executor_runs_a_registered_native_connector(backend) {
        let node = crate::sync::harness::Node::new(backend, true, &[]).await;
        let server = MockServer::start().await;
        let fake = Fake::default();
        fake.add(1, 0);
        fake.add(2, 1);
        Mock::given(method("GET")).and(path("/items")).respond_with(fake.clone()).mount(&server).await;
        let yaml = descriptor("native", &server.uri(), Delta::Cursor, Paging::Cursor);
        let compiled = Arc::new(load_str("native.yaml", &yaml, Format::Yaml).unwrap());
        let native = Arc::new(Native {
            inner: DescriptorConnector::new(Arc::clone(&compiled)),
            syncs: AtomicUsize::new(0),
        });
        node.services.registry.insert_connector(native.clone(), true);

        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "native", &[("token", "t")], json!({})).await;
        scheduler::enqueue_backfill(&node.services, tenant, conn, "native").await.unwrap();
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
        assert_eq!(native.syncs.load(Ordering::SeqCst), 1);
        let stored = cursors::load(&node.services.db, tenant, conn).await.unwrap();
        assert_eq!(stored.get("").cloned().flatten().as_deref(), Some("history-1"));
        let (_, jobs) = node.api("GET", "/jobs", Some(tenant), None).await;
        assert_eq!(jobs["jobs"][0]["cursor_after"], "history-1", "{jobs}");
    }
}

/// A connector whose sync panics.
#[derive(Debug)]
struct Panicky(DescriptorConnector);

#[async_trait]
impl Connector for Panicky {
    fn catalogue(&self) -> &Catalogue {
        self.0.catalogue()
    }
    fn capabilities(&self) -> &Capabilities {
        self.0.capabilities()
    }
    async fn sync(
        &self,
        _: &ConnectionContext<'_>,
        _: SyncMode,
        _: &Checkpoints,
        _: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        panic!("boom in the connector");
    }
    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        self.0.health_check(ctx).await
    }
}

crate::on_both! {
    async fn a_panicking_job_fails_as_an_attempt_and_the_worker_goes_on(backend) {
        let node = crate::sync::harness::Node::new(backend, true, &[]).await;
        let server = MockServer::start().await;
        let fake = Fake::default();
        fake.add(1, 0);
        Mock::given(method("GET")).and(path("/items")).respond_with(fake.clone()).mount(&server).await;
        let compiled = Arc::new(load_str("panicky.yaml", &descriptor("panicky", &server.uri(), Delta::Cursor, Paging::Cursor), Format::Yaml).unwrap());
        node.services.registry.insert_connector(Arc::new(Panicky(DescriptorConnector::new(compiled))), true);
        node.register(&descriptor("calm", &server.uri(), Delta::Cursor, Paging::Cursor));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let bad = node.connection(tenant, "panicky", &[("token", "t")], json!({})).await;
        let good = node.connection(tenant, "calm", &[("token", "t")], json!({})).await;
        scheduler::enqueue_backfill(&node.services, tenant, bad, "panicky").await.unwrap();
        scheduler::enqueue_backfill(&node.services, tenant, good, "calm").await.unwrap();
        let executor = node.executor("w");
        let first = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!(first.state, JobState::Retrying, "{first:?}");
        assert!(first.error.as_deref().unwrap().contains("panicked: boom in the connector"), "{first:?}");
        // The same executor runs the next job.
        let second = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((second.state, second.signals), (JobState::Succeeded, 1), "{second:?}");
    }
}
