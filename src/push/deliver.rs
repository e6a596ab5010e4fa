//! The deliverer, on worker nodes: each enabled, active subscription is
//! delivered by one task on one node at a time (the lease `push:<id>`),
//! which walks the tenant's Signals in arrival order from the subscription's
//! durable cursor, records each batch (its Signals, end and `webhook-id`)
//! before sending it (so a retry, on this node or another after a crash,
//! sends the same batch under the same id), POSTs it signed (Standard
//! Webhooks) following no redirect, and on a 2xx moves the cursor past it;
//! anything else waits on the retry schedule (`schedule`), a `410` disables
//! the subscription, and an exhausted schedule marks it failing. A task
//! waits for its tenant's new Signals on the node's announcements
//! (PostgreSQL `NOTIFY` across nodes), with a bounded look as the fallback,
//! and lets Signals gather for a moment after a small batch. A slow or dead
//! subscriber holds only its own task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::schedule::{self, Next};
use super::signing::{SigningKey, signature_header};
use crate::api::routes::signals::SignalDto;
use crate::db::StoreError;
use crate::db::repo::arrivals::{self, Position};
use crate::db::repo::leases;
use crate::db::repo::signals::SignalFilter;
use crate::db::repo::subscriptions::{self, Failure, Pending, State, Subscription, Taken};
use crate::domain::{SubscriptionId, TenantId};
use crate::engine::http::{HttpClient, HttpError, HttpRequest, snippet};
use crate::services::Services;

/// How often the supervisor looks for subscriptions to take up.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// After a batch that was not full was taken, the next read waits this long
/// (not woken by announcements): under load, Signals gather into fewer,
/// larger batches (two commits each) instead of one delivery per Signal.
const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// Response bodies read at most (the answer is not used beyond its status).
const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// The body of a delivery.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// Always `signals.batch`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When this attempt was sent (RFC 3339).
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// The batch.
    pub data: DeliveryData,
}

/// The batch of a delivery.
#[derive(Debug, Serialize)]
pub struct DeliveryData {
    /// The subscription.
    pub subscription_id: SubscriptionId,
    /// Signals in arrival order.
    pub signals: Vec<SignalDto>,
    /// The arrival position after this batch (a `start` or `Last-Event-ID` to resume from).
    pub cursor: String,
}

/// The prefix of the subscriptions' lease names.
const LEASE_PREFIX: &str = "push:";

/// The lease name of a subscription.
pub fn lease(id: SubscriptionId) -> String {
    format!("{LEASE_PREFIX}{id}")
}

/// How long a task's lease lasts without renewal: longer than any attempt.
fn lease_for(services: &Services) -> chrono::Duration {
    let timeout = services.config.push.timeout;
    chrono::Duration::from_std(timeout * 2 + Duration::from_secs(5))
        .unwrap_or(chrono::Duration::minutes(1))
}

/// Delivers every subscription this node can take until `shutdown` turns true.
pub async fn run(services: Arc<Services>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let holder = format!("node-{}", uuid::Uuid::now_v7());
    let mut tasks: HashMap<SubscriptionId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tasks.retain(|_, t| !t.is_finished());
        if let Err(e) = supervise(&services, &holder, &mut tasks, &shutdown).await {
            tracing::warn!(error = %e, "cannot look for subscriptions to deliver");
        }
        tokio::select! {
            () = services.ambient.sleep(SUPERVISE_EVERY) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for (_, task) in tasks {
        let _ = task.await;
    }
}

/// Takes up the due subscriptions whose lease is free; sets the gauge.
async fn supervise(
    services: &Arc<Services>,
    holder: &str,
    tasks: &mut HashMap<SubscriptionId, tokio::task::JoinHandle<()>>,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let db = &services.db;
    let mut by_state: HashMap<&'static str, u64> = HashMap::new();
    for (state, enabled, n) in subscriptions::states(db).await? {
        let name = if enabled || state != State::Active {
            state.as_str()
        } else {
            "paused"
        };
        *by_state.entry(name).or_default() += n;
    }
    for state in State::ALL.map(State::as_str).into_iter().chain(["paused"]) {
        let n = by_state.get(state).copied().unwrap_or(0);
        metrics::gauge!("push_subscriptions", "state" => state).set(n as f64);
    }
    let now = services.ambient.now();
    let elsewhere = leases::held_by_others(db, LEASE_PREFIX, holder, now).await?;
    for (tenant, id) in subscriptions::due(db).await? {
        if tasks.contains_key(&id) || elsewhere.contains(&lease(id)) {
            continue;
        }
        let now = services.ambient.now();
        if !leases::take(db, &lease(id), holder, now, now + lease_for(services)).await? {
            continue;
        }
        let task = Task {
            http: HttpClient::without_redirects(services.http.policy())
                .with_ambient(services.ambient.clone()),
            services: Arc::clone(services),
            holder: holder.to_owned(),
            tenant,
            id,
            shutdown: shutdown.clone(),
            renewed: now,
            skipped: None,
            skip_saved: now - SKIP_SAVE_EVERY,
            known: None,
            deleted: false,
        };
        let span = tracing::error_span!("push", subscription_id = %id, tenant_id = %tenant);
        tasks.insert(
            id,
            tokio::spawn(tracing::Instrument::instrument(task.run(), span)),
        );
    }
    Ok(())
}

/// One subscription's delivery, while this node holds its lease.
struct Task {
    services: Arc<Services>,
    /// Follows no redirect: a 3xx is a failed attempt.
    http: HttpClient,
    holder: String,
    tenant: TenantId,
    id: SubscriptionId,
    shutdown: tokio::sync::watch::Receiver<bool>,
    renewed: chrono::DateTime<chrono::Utc>,
    /// Read past Signals the filters left out, not yet stored: the stored
    /// cursor and the subscription's `updated_at` it applies to (a change of
    /// the filters starts over), and where reading goes on from.
    skipped: Option<(String, chrono::DateTime<chrono::Utc>, Position)>,
    /// When a skip was last stored.
    skip_saved: chrono::DateTime<chrono::Utc>,
    /// The subscription as this task last read or moved it, and when it was
    /// read: used instead of reading it again for [`KNOWN_FOR`] after a
    /// delivery (an API change applies within that).
    known: Option<(Subscription, chrono::DateTime<chrono::Utc>)>,
    /// The subscription was deleted.
    deleted: bool,
}

/// How long a task delivers from what it knows of its subscription before
/// reading it again (an API change to it applies within this).
const KNOWN_FOR: chrono::Duration = chrono::Duration::seconds(1);

/// How often at most a task stores a cursor moved past Signals the filters
/// left out (on PostgreSQL the horizon moves with every transaction; storing
/// it is only a shortcut for the next reader after a restart).
const SKIP_SAVE_EVERY: chrono::Duration = chrono::Duration::seconds(10);

/// What one step of a task did.
enum Step {
    /// Go on at once.
    Again,
    /// Nothing to do before this long (or an announcement of new Signals).
    Wait(Duration),
    /// Wait this long whatever is announced.
    Pause(Duration),
    /// The subscription is no longer this task's to deliver.
    Stop,
}

impl Task {
    async fn run(mut self) {
        let arrived = self.services.db.signals_arrived(self.tenant);
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            // Listen before reading, so an announcement during the read counts.
            let notified = arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = match self.step().await {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(error = %e, "push delivery step failed");
                    Step::Wait(Duration::from_secs(1))
                }
            };
            match step {
                Step::Again => {}
                Step::Stop => break,
                Step::Pause(pause) => {
                    tokio::select! {
                        () = self.services.ambient.sleep(pause) => {}
                        _ = self.shutdown.changed() => {}
                    }
                }
                Step::Wait(wait) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = self.services.ambient.sleep(wait) => {}
                        _ = self.shutdown.changed() => {}
                    }
                }
            }
        }
        let db = &self.services.db;
        let name = lease(self.id);
        let _ = if self.deleted {
            // Deleted: its lease goes too (else one expired row per deleted
            // subscription would stay forever).
            leases::forget(db, &name).await
        } else {
            leases::give_up(db, &name, &self.holder, self.services.ambient.now()).await
        };
    }

    /// Renews the lease a third of the way through it: false once lost.
    async fn keep_lease(&mut self) -> Result<bool, StoreError> {
        let now = self.services.ambient.now();
        let length = lease_for(&self.services);
        if now - self.renewed < length / 3 {
            return Ok(true);
        }
        let held = leases::take(
            &self.services.db,
            &lease(self.id),
            &self.holder,
            now,
            now + length,
        )
        .await?;
        self.renewed = now;
        Ok(held)
    }

    async fn step(&mut self) -> Result<Step, StoreError> {
        if !self.keep_lease().await? {
            return Ok(Step::Stop);
        }
        let services = Arc::clone(&self.services);
        let db = &services.db;
        let now = services.ambient.now();
        let (sub, read_at) = match self.known.take() {
            Some((sub, at)) if now - at < KNOWN_FOR => (sub, at),
            _ => {
                let Some(sub) = subscriptions::get(db, self.tenant, self.id).await? else {
                    self.deleted = true;
                    return Ok(Step::Stop);
                };
                (sub, now)
            }
        };
        if !sub.enabled || sub.state != State::Active {
            return Ok(Step::Stop);
        }
        let renew_within = (lease_for(&services) / 3)
            .to_std()
            .unwrap_or(Duration::from_secs(5));
        if let Some(at) = sub.next_attempt_at
            && at > now
        {
            let wait = (at - now).to_std().unwrap_or_default();
            return Ok(Step::Wait(wait.min(renew_within)));
        }
        if let Some(pending) = &sub.pending {
            // Exactly the batch recorded before it was first sent.
            let batch = arrivals::by_ids(db, self.tenant, &pending.signals).await?;
            return self.attempt(&sub, read_at, batch, pending).await;
        }
        let Some(stored) = Position::decode(&sub.position).filter(|p| p.fits(db.backend())) else {
            return self
                .refuse(&sub, "its cursor is not a position of this database")
                .await;
        };
        let position = match &self.skipped {
            Some((text, at, p)) if *text == sub.position && *at == sub.updated_at => *p,
            _ => stored,
        };
        let push = &services.config.push;
        let filter = SignalFilter {
            provider: sub.provider.clone(),
            connection_id: sub.connection_id,
            ..SignalFilter::default()
        };
        let read = arrivals::read(
            db,
            self.tenant,
            &filter,
            &sub.kinds,
            position,
            None,
            push.batch_size,
        )
        .await?;
        if stored > read.horizon {
            // Restored from a logical backup into another cluster, say:
            // waiting would deliver nothing, silently.
            return self
                .refuse(&sub, "its cursor is ahead of the database (restored from a logical backup?): move it with PATCH start")
                .await;
        }
        let next = read.next;
        let fallback = arrivals::fallback(db.backend());
        if read.signals.is_empty() {
            if next > position {
                self.skipped = Some((sub.position.clone(), sub.updated_at, next));
                if now - self.skip_saved >= SKIP_SAVE_EVERY {
                    self.skip_saved = now;
                    subscriptions::skip(db, self.tenant, self.id, &sub.position, &next.encode())
                        .await?;
                }
            }
            // A filtered read stopped looking before the horizon: go on.
            if next < read.horizon {
                return Ok(Step::Again);
            }
            return Ok(Step::Wait(fallback.min(renew_within)));
        }
        let (batch, end) = within_bytes(read.signals, next, push.batch_bytes, sub.include_payload);
        let pending = Pending {
            end: end.encode(),
            webhook_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            signals: batch.iter().map(|(_, s)| s.id).collect(),
            include_payload: sub.include_payload,
        };
        if !subscriptions::begin_batch(
            db,
            self.tenant,
            self.id,
            (&sub.position, sub.updated_at),
            &pending,
        )
        .await?
        {
            return Ok(Step::Again);
        }
        self.attempt(&sub, read_at, batch, &pending).await
    }

    /// Marks the subscription failing with `why` (its task stops).
    async fn refuse(&mut self, sub: &Subscription, why: &str) -> Result<Step, StoreError> {
        tracing::error!(reason = why, "a push subscription cannot be delivered");
        subscriptions::refuse(
            &self.services.db,
            self.tenant,
            self.id,
            &sub.position,
            why,
            self.services.ambient.now(),
        )
        .await?;
        metrics::counter!("push_deliveries_total", "outcome" => "failing").increment(1);
        Ok(Step::Stop)
    }

    /// Sends the pending batch once and records what came of it (`sub` as
    /// read at `read_at`).
    async fn attempt(
        &mut self,
        sub: &Subscription,
        read_at: chrono::DateTime<chrono::Utc>,
        batch: Vec<(Position, crate::domain::Signal)>,
        pending: &Pending,
    ) -> Result<Step, StoreError> {
        let services = Arc::clone(&self.services);
        let db = &services.db;
        let ambient = &services.ambient;
        let count = batch.len() as u64;
        let oldest = batch.first().map(|(_, s)| s.received_at);
        let now = ambient.now();
        let body = serde_json::to_vec(&Delivery {
            kind: "signals.batch",
            timestamp: now,
            data: DeliveryData {
                subscription_id: sub.id,
                signals: batch
                    .into_iter()
                    .map(|(_, s)| SignalDto::new(s, pending.include_payload))
                    .collect(),
                cursor: pending.end.clone(),
            },
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let keys: Vec<SigningKey> = sub
            .signing_secrets(&services.keys, now)?
            .iter()
            .filter_map(|s| SigningKey::parse(s.expose_secret()).ok())
            .collect();
        let timestamp = now.timestamp();
        let url = url::Url::parse(&sub.url)
            .map_err(|e| StoreError::Corrupt(format!("subscription URL: {e}")))?;
        let mut request = HttpRequest::new(Method::POST, url);
        request.timeout = services.config.push.timeout;
        request.max_response_bytes = MAX_RESPONSE_BYTES;
        // Only the status counts: a long answer is cut, not a failure.
        request.truncate_response = true;
        let headers = &mut request.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let text =
            |v: &str| HeaderValue::from_str(v).map_err(|e| StoreError::Corrupt(e.to_string()));
        headers.insert("webhook-id", text(&pending.webhook_id)?);
        headers.insert("webhook-timestamp", text(&timestamp.to_string())?);
        headers.insert(
            "webhook-signature",
            text(&signature_header(
                &keys,
                &pending.webhook_id,
                timestamp,
                &body,
            ))?,
        );
        request.body = Some(body);
        let sent = tokio::select! {
            r = self.http.send_once(&request) => r,
            _ = self.shutdown.changed() => return Ok(Step::Stop),
        };
        let (status, retry_after, error) = match &sent {
            Ok(r) => (
                Some(r.status),
                schedule::retry_after(r.headers.get("retry-after").and_then(|v| v.to_str().ok())),
                format!("answered {}: {}", r.status, snippet(&r.body)),
            ),
            Err(HttpError::Status { status, body, .. }) => {
                (Some(*status), None, format!("answered {status}: {body}"))
            }
            Err(e) => (e.status(), None, e.to_string()),
        };
        let now = ambient.now();
        let failures = sub.failures + 1;
        let next = schedule::after(
            status,
            failures,
            retry_after,
            &services.config.push.retry_schedule,
            ambient,
        );
        let (state, next_attempt_at, outcome) = match next {
            Next::Advance => {
                let taken = Taken {
                    webhook_id: &pending.webhook_id,
                    end: &pending.end,
                    count,
                    status: status.unwrap_or(200),
                };
                if subscriptions::delivered(db, self.tenant, self.id, &sub.position, taken, now)
                    .await?
                {
                    // Moved by this task: what it knows stays true.
                    let mut moved = sub.clone();
                    moved.position = pending.end.clone();
                    moved.pending = None;
                    moved.failures = 0;
                    moved.next_attempt_at = None;
                    self.known = Some((moved, read_at));
                    metrics::counter!("push_deliveries_total", "outcome" => "delivered")
                        .increment(1);
                    metrics::counter!("push_signals_delivered_total").increment(count);
                    if let Some(oldest) = oldest {
                        let latency = (now - oldest).num_microseconds().unwrap_or(0) as f64 / 1e6;
                        metrics::histogram!("push_delivery_latency_seconds")
                            .record(latency.max(0.0));
                    }
                }
                if count < services.config.push.batch_size {
                    return Ok(Step::Pause(BATCH_WINDOW));
                }
                return Ok(Step::Again);
            }
            Next::RetryAfter(wait) => (
                State::Active,
                Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(10))),
                "retrying",
            ),
            Next::Disable => (State::Disabled, None, "disabled"),
            Next::GiveUp => (State::Failing, None, "failing"),
        };
        metrics::counter!("push_deliveries_total", "outcome" => outcome).increment(1);
        tracing::info!(failures, status = ?status, outcome, "push delivery not taken");
        let failure = Failure {
            webhook_id: pending.webhook_id.clone(),
            before: sub.failures,
            failures,
            status,
            error: error.chars().take(500).collect(),
            next_attempt_at,
            state,
        };
        subscriptions::failed(db, self.tenant, self.id, &sub.position, failure, now).await?;
        Ok(Step::Again)
    }
}

/// The leading Signals of `signals` whose encoded size stays within `bytes`
/// (at least one), and the position after them: `next` when all fit.
fn within_bytes(
    mut signals: Vec<(Position, crate::domain::Signal)>,
    next: Position,
    bytes: usize,
    include_payload: bool,
) -> (Vec<(Position, crate::domain::Signal)>, Position) {
    let mut total = 256;
    let mut keep = 0;
    for (_, s) in &signals {
        let size = serde_json::to_vec(&SignalDto::new(s.clone(), include_payload))
            .map_or(0, |v| v.len() + 1);
        if keep > 0 && total + size > bytes {
            break;
        }
        total += size;
        keep += 1;
    }
    if keep == signals.len() {
        return (signals, next);
    }
    signals.truncate(keep);
    let end = signals.last().map_or(next, |(p, _)| *p);
    (signals, end)
}
