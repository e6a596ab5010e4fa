//! Who waits for new Signals of which tenant on this node (push deliverers,
//! live streams), and which tenants' new Signals other nodes are yet to be
//! told about. A commit wakes only the waiters of its tenants.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::TenantId;

/// Tenants a PostgreSQL announcement names at most (its payload is limited
/// to 8000 bytes); beyond it the announcement says "every tenant".
const MAX_NAMED: usize = 200;
/// The payload of an announcement for every tenant.
pub const EVERY_TENANT: &str = "*";

/// The registry (shared by every clone of a `Db`).
#[derive(Debug, Default)]
pub struct Arrived {
    waiters: Mutex<HashMap<TenantId, Weak<Notify>>>,
    outgoing: Mutex<HashSet<TenantId>>,
    /// Set when `outgoing` has something to send.
    pub(super) to_announce: Notify,
}

impl Arrived {
    /// What a waiter for the tenant's new Signals waits on.
    pub fn waiter(&self, tenant: TenantId) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().expect("the waiters lock");
        if let Some(n) = waiters.get(&tenant).and_then(Weak::upgrade) {
            return n;
        }
        if waiters.len() > 1024 {
            waiters.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        waiters.insert(tenant, Arc::downgrade(&n));
        n
    }

    /// Wakes this node's waiters of `tenants`.
    pub fn wake(&self, tenants: impl IntoIterator<Item = TenantId>) {
        let waiters = self.waiters.lock().expect("the waiters lock");
        for t in tenants {
            if let Some(n) = waiters.get(&t).and_then(Weak::upgrade) {
                n.notify_waiters();
            }
        }
    }

    /// Wakes every waiter of this node.
    pub fn wake_all(&self) {
        let waiters = self.waiters.lock().expect("the waiters lock");
        for n in waiters.values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    /// Signals of `tenants` were committed here: wakes this node's waiters
    /// and queues the announcement to the other nodes.
    pub fn committed(&self, tenants: &HashSet<TenantId>) {
        if tenants.is_empty() {
            return;
        }
        self.wake(tenants.iter().copied());
        self.outgoing
            .lock()
            .expect("the outgoing lock")
            .extend(tenants.iter().copied());
        self.to_announce.notify_one();
    }

    /// The payload announcing what was queued (and clears it); `None` when
    /// nothing was.
    pub fn take_announcement(&self) -> Option<String> {
        let tenants: Vec<TenantId> = self
            .outgoing
            .lock()
            .expect("the outgoing lock")
            .drain()
            .collect();
        if tenants.is_empty() {
            return None;
        }
        if tenants.len() > MAX_NAMED {
            return Some(EVERY_TENANT.to_owned());
        }
        Some(
            tenants
                .iter()
                .map(|t| t.as_uuid().simple().to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// Wakes the waiters an announcement from another node names.
    pub fn received(&self, payload: &str) {
        if payload == EVERY_TENANT || payload.is_empty() {
            return self.wake_all();
        }
        self.wake(
            payload
                .split(',')
                .filter_map(|t| Uuid::try_parse(t).ok())
                .map(TenantId::from_uuid),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_wakes_its_tenants_waiters_only_and_announces_them() {
        let arrived = Arrived::default();
        let (a, b) = (
            TenantId::from_uuid(Uuid::now_v7()),
            TenantId::from_uuid(Uuid::now_v7()),
        );
        let (wa, wb) = (arrived.waiter(a), arrived.waiter(b));
        let (na, nb) = (wa.notified(), wb.notified());
        tokio::pin!(na, nb);
        na.as_mut().enable();
        nb.as_mut().enable();
        arrived.committed(&HashSet::from([a]));
        assert!(futures_util::poll!(na.as_mut()).is_ready());
        assert!(futures_util::poll!(nb.as_mut()).is_pending());
        let payload = arrived.take_announcement().unwrap();
        assert_eq!(payload, a.as_uuid().simple().to_string());
        assert_eq!(arrived.take_announcement(), None);
        // Received from another node: b's waiter wakes.
        arrived.received(&b.as_uuid().simple().to_string());
        assert!(futures_util::poll!(nb.as_mut()).is_ready());
        // Too many to name: every tenant.
        let many: HashSet<TenantId> = (0..=MAX_NAMED)
            .map(|_| TenantId::from_uuid(Uuid::now_v7()))
            .collect();
        arrived.committed(&many);
        assert_eq!(arrived.take_announcement().as_deref(), Some(EVERY_TENANT));
        // The same waiter for one tenant while it lives.
        assert!(Arc::ptr_eq(&wa, &arrived.waiter(a)));
    }
}
