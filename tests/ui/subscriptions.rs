//! The connections page shows the tenant's push subscriptions: a failing one
//! as failing, with its last error and no query string of its URL.

use poblysh_connectors::db::repo::subscriptions::{self, State};
use poblysh_connectors::domain::{SubscriptionId, TenantId};
use serde_json::json;
use uuid::Uuid;

use super::Browser;
use crate::sync::harness::{Backend, Node};

#[tokio::test]
async fn a_failing_subscription_is_shown_failing() {
    let node = Node::new(Backend::Sqlite, false, &[]).await;
    let tenant = Uuid::now_v7();
    let t = TenantId::from_uuid(tenant);
    let mut b = Browser::new(&node);
    b.sign_in(tenant).await;
    let a = b.get("/ui/connections").await;
    assert!(!a.body.contains("Push subscriptions"), "none yet");
    let (status, created) = node
        .api(
            "POST",
            "/subscriptions",
            Some(t),
            Some(json!({"url": "https://core.example.com/hook?token=s3cr3t-in-query"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = SubscriptionId::from_uuid(created["id"].as_str().unwrap().parse().unwrap());
    let db = &node.services.db;
    let sub = subscriptions::get(db, t, id).await.unwrap().unwrap();
    let why = "answered 503: down for maintenance";
    assert!(
        subscriptions::refuse(db, t, id, &sub.position, why, chrono::Utc::now())
            .await
            .unwrap()
    );
    assert_eq!(
        subscriptions::get(db, t, id).await.unwrap().unwrap().state,
        State::Failing
    );
    let a = b.get("/ui/connections").await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("data-subscription-state=\"failing\""),
        "{}",
        a.body
    );
    assert!(a.body.contains("https://core.example.com/hook"));
    assert!(a.body.contains("down for maintenance"));
    assert!(!a.body.contains("s3cr3t-in-query"));
    assert!(!a.body.contains(created["secret"].as_str().unwrap()));
}
