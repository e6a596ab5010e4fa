//! Push subscriptions, tenant-scoped: created with a sealed signing secret,
//! changed, rotated and deleted through the API; their delivery state (the
//! durable cursor, the batch in flight, failures in a row) moved by the
//! deliverer with compare-and-set on the cursor, so a node that lost the
//! subscription's lease can never move it back. `due` is the deliverer's one
//! cross-tenant read (which subscriptions to deliver; each is then read and
//! written with its tenant).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::crypto::{Binding, KeyRing};
use crate::db::entities::subscription::{ActiveModel, Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::{ConnectionId, SubscriptionId, TenantId};

/// The AAD field of the sealed signing secret.
pub const SECRET: &str = "push_secret";
/// The AAD field of the sealed previous secret.
pub const PREVIOUS_SECRET: &str = "push_previous_secret";
/// Subscriptions a tenant may have.
pub const PER_TENANT: u64 = 100;

/// Delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Delivering (or retrying on schedule).
    Active,
    /// The retry schedule ran out: nothing is delivered until re-enabled.
    Failing,
    /// The subscriber answered `410 Gone`.
    Disabled,
}

impl State {
    /// The stored and API form.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Failing => "failing",
            State::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "failing" => State::Failing,
            "disabled" => State::Disabled,
            _ => State::Active,
        }
    }

    /// Every state (metrics).
    pub const ALL: [State; 3] = [State::Active, State::Failing, State::Disabled];
}

/// A subscription, secrets left sealed.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Id.
    pub id: SubscriptionId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Target URL.
    pub url: String,
    /// Only this connector's Signals.
    pub provider: Option<String>,
    /// Only this connection's.
    pub connection_id: Option<ConnectionId>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Signals carry their payload.
    pub include_payload: bool,
    /// Deliveries run.
    pub enabled: bool,
    /// Delivery state.
    pub state: State,
    /// Delivered up to (an encoded arrival position).
    pub position: String,
    /// The batch in flight.
    pub pending: Option<Pending>,
    /// Failed attempts of the pending batch in a row.
    pub failures: u32,
    /// When the pending batch is tried again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last batch taken.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Signals delivered in all.
    pub delivered: u64,
    /// Until when the previous secret still signs.
    pub previous_until: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Changed.
    pub updated_at: DateTime<Utc>,
    secret: Vec<u8>,
    previous_secret: Option<Vec<u8>>,
}

impl From<Model> for Subscription {
    fn from(m: Model) -> Self {
        let kinds = m.kinds.map(super::signals::strings).unwrap_or_default();
        Subscription {
            id: SubscriptionId::from_uuid(m.id),
            tenant_id: TenantId::from_uuid(m.tenant_id),
            url: m.url,
            provider: m.provider,
            connection_id: m.connection_id.map(ConnectionId::from_uuid),
            kinds,
            include_payload: m.include_payload,
            enabled: m.enabled,
            state: State::parse(&m.state),
            position: m.position,
            pending: match (m.pending_end, m.pending_id, m.pending_signals) {
                (Some(end), Some(webhook_id), signals) => {
                    Some(Pending::stored(end, webhook_id, signals))
                }
                _ => None,
            },
            failures: u32::try_from(m.failures).unwrap_or(0),
            next_attempt_at: m.next_attempt_at,
            last_status: m.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: m.last_error,
            last_attempt_at: m.last_attempt_at,
            last_delivered_at: m.last_delivered_at,
            delivered: u64::try_from(m.delivered).unwrap_or(0),
            previous_until: m.previous_until,
            created_at: m.created_at,
            updated_at: m.updated_at,
            secret: m.secret,
            previous_secret: m.previous_secret,
        }
    }
}

/// A batch recorded before it is sent: retried exactly as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Where the cursor moves once it is taken.
    pub end: String,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// The Signals it carries, in arrival order.
    pub signals: Vec<Uuid>,
    /// Whether they carry their payloads.
    pub include_payload: bool,
}

impl Pending {
    fn stored(end: String, webhook_id: String, signals: Option<Value>) -> Pending {
        let signals = signals.unwrap_or_default();
        Pending {
            end,
            webhook_id,
            signals: signals["ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().and_then(|s| Uuid::try_parse(s).ok()))
                        .collect()
                })
                .unwrap_or_default(),
            include_payload: signals["payload"].as_bool().unwrap_or(false),
        }
    }

    fn json(&self) -> Value {
        serde_json::json!({
            "ids": self.signals.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            "payload": self.include_payload,
        })
    }
}

fn binding(tenant: TenantId, id: SubscriptionId, field: &str) -> Binding<'_> {
    Binding {
        tenant,
        record: ConnectionId::from_uuid(*id.as_uuid()),
        field,
    }
}

impl Subscription {
    /// The secrets that sign at `now`: the current one, and the previous one
    /// within its grace window.
    pub fn signing_secrets(
        &self,
        keys: &KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Vec<SecretString>, StoreError> {
        let open = |sealed: &[u8], field| -> Result<SecretString, StoreError> {
            let plain = zeroize::Zeroizing::new(
                keys.open(sealed, binding(self.tenant_id, self.id, field))?,
            );
            Ok(SecretString::from(
                String::from_utf8(plain.to_vec())
                    .map_err(|_| StoreError::Corrupt("a push secret is not text".into()))?,
            ))
        };
        let mut secrets = vec![open(&self.secret, SECRET)?];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_until)
            && now < until
        {
            secrets.push(open(previous, PREVIOUS_SECRET)?);
        }
        Ok(secrets)
    }
}

/// A new subscription.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// Target URL (checked by the caller).
    pub url: String,
    /// Filters.
    pub provider: Option<String>,
    /// Filters.
    pub connection_id: Option<ConnectionId>,
    /// Filters.
    pub kinds: Vec<String>,
    /// Signals carry their payload.
    pub include_payload: bool,
    /// Enabled at once.
    pub enabled: bool,
    /// The start position (encoded).
    pub position: String,
}

fn kinds_json(kinds: &[String]) -> Option<Value> {
    (!kinds.is_empty()).then(|| Value::Array(kinds.iter().cloned().map(Value::String).collect()))
}

/// How many subscriptions the tenant has.
pub async fn count(db: &Db, tenant: TenantId) -> Result<u64, StoreError> {
    Ok(Entity::find()
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .count(db.conn())
        .await?)
}

/// Stores a new subscription signing with `secret`.
pub async fn create(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    new: NewSubscription,
    secret: &SecretString,
) -> Result<Subscription, StoreError> {
    let id = SubscriptionId::from_uuid(Uuid::now_v7());
    let now = db.now();
    let sealed = keys.seal(
        secret.expose_secret().as_bytes(),
        binding(tenant, id, SECRET),
    );
    let row = ActiveModel {
        id: Set(*id.as_uuid()),
        tenant_id: Set(*tenant.as_uuid()),
        url: Set(new.url),
        provider: Set(new.provider),
        connection_id: Set(new.connection_id.map(|c| *c.as_uuid())),
        kinds: Set(kinds_json(&new.kinds)),
        include_payload: Set(new.include_payload),
        secret: Set(sealed),
        previous_secret: Set(None),
        previous_until: Set(None),
        enabled: Set(new.enabled),
        state: Set(State::Active.as_str().to_owned()),
        position: Set(new.position),
        pending_end: Set(None),
        pending_id: Set(None),
        pending_signals: Set(None),
        failures: Set(0),
        next_attempt_at: Set(None),
        last_status: Set(None),
        last_error: Set(None),
        last_attempt_at: Set(None),
        last_delivered_at: Set(None),
        delivered: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(db.conn()).await?.into())
}

/// The tenant's subscriptions, oldest first.
pub async fn list(db: &Db, tenant: TenantId) -> Result<Vec<Subscription>, StoreError> {
    Ok(Entity::find()
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .order_by_asc(Column::Id)
        .limit(PER_TENANT)
        .all(db.conn())
        .await?
        .into_iter()
        .map(Subscription::from)
        .collect())
}

/// One of the tenant's subscriptions.
pub async fn get(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<Option<Subscription>, StoreError> {
    Ok(Entity::find_by_id(*id.as_uuid())
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .one(db.conn())
        .await?
        .map(Subscription::from))
}

/// Changes to a subscription.
#[derive(Debug, Default, Clone)]
pub struct SubscriptionPatch {
    /// New URL (checked by the caller).
    pub url: Option<String>,
    /// New filters (`Some(None)` clears one).
    pub provider: Option<Option<String>>,
    /// New filters.
    pub connection_id: Option<Option<ConnectionId>>,
    /// New filters.
    pub kinds: Option<Vec<String>>,
    /// Payloads or not.
    pub include_payload: Option<bool>,
    /// Enable (which also ends a failing or disabled state, retrying the
    /// pending batch at once) or disable.
    pub enabled: Option<bool>,
    /// A new secret: the current one keeps signing until the given time.
    pub rotate: Option<(SecretString, DateTime<Utc>)>,
    /// Move the cursor (encoded position); drops a pending batch.
    pub position: Option<String>,
}

/// Applies `patch`; `None` when the tenant has no such subscription. A
/// compare-and-set on `updated_at`: two changes at once (two rotations, a
/// change and a delete) never undo each other; the later one is applied
/// again on what the earlier one left.
pub async fn update(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    id: SubscriptionId,
    patch: SubscriptionPatch,
) -> Result<Option<Subscription>, StoreError> {
    for _ in 0..5 {
        let Some(model) = Entity::find_by_id(*id.as_uuid())
            .filter(Column::TenantId.eq(*tenant.as_uuid()))
            .one(db.conn())
            .await?
        else {
            return Ok(None);
        };
        let read_at = model.updated_at;
        let row = patched(keys, tenant, id, model, patch.clone(), db.now())?;
        let swapped = Entity::update_many()
            .set(row)
            .filter(Column::Id.eq(*id.as_uuid()))
            .filter(Column::TenantId.eq(*tenant.as_uuid()))
            .filter(Column::UpdatedAt.eq(read_at))
            .exec(db.conn())
            .await?;
        if swapped.rows_affected == 1 {
            return get(db, tenant, id).await;
        }
    }
    Err(StoreError::Corrupt(format!(
        "subscription {id} kept changing while it was updated"
    )))
}

/// The changes of `patch` to `model`.
fn patched(
    keys: &KeyRing,
    tenant: TenantId,
    id: SubscriptionId,
    model: Model,
    patch: SubscriptionPatch,
    now: DateTime<Utc>,
) -> Result<ActiveModel, StoreError> {
    let old_secret = model.secret.clone();
    let mut row: ActiveModel = model.into();
    if let Some(url) = patch.url {
        row.url = Set(url);
    }
    if let Some(p) = patch.provider {
        row.provider = Set(p);
    }
    if let Some(c) = patch.connection_id {
        row.connection_id = Set(c.map(|c| *c.as_uuid()));
    }
    if let Some(k) = patch.kinds {
        row.kinds = Set(kinds_json(&k));
    }
    if let Some(p) = patch.include_payload {
        row.include_payload = Set(p);
    }
    if let Some(enabled) = patch.enabled {
        row.enabled = Set(enabled);
        if enabled {
            row.state = Set(State::Active.as_str().to_owned());
            row.failures = Set(0);
            row.next_attempt_at = Set(None);
        }
    }
    if let Some((secret, until)) = patch.rotate {
        // The old secret, re-sealed for its new field.
        let plain = zeroize::Zeroizing::new(keys.open(&old_secret, binding(tenant, id, SECRET))?);
        row.previous_secret = Set(Some(
            keys.seal(&plain, binding(tenant, id, PREVIOUS_SECRET)),
        ));
        row.previous_until = Set(Some(stored_time(until)));
        row.secret = Set(keys.seal(
            secret.expose_secret().as_bytes(),
            binding(tenant, id, SECRET),
        ));
    }
    if let Some(position) = patch.position {
        row.position = Set(position);
        row.pending_end = Set(None);
        row.pending_id = Set(None);
        row.pending_signals = Set(None);
        row.failures = Set(0);
        row.next_attempt_at = Set(None);
    }
    row.updated_at = Set(now);
    Ok(row)
}

/// Deletes a subscription; false when the tenant has none such.
pub async fn delete(db: &Db, tenant: TenantId, id: SubscriptionId) -> Result<bool, StoreError> {
    let result = Entity::delete_many()
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected > 0)
}

/// The subscriptions to deliver (enabled and active), across tenants: each
/// id with its tenant, for the deliverer, which reads and writes each one
/// through its tenant.
pub async fn due(db: &Db) -> Result<Vec<(TenantId, SubscriptionId)>, StoreError> {
    let rows: Vec<(Uuid, Uuid)> = Entity::find()
        .select_only()
        .column(Column::TenantId)
        .column(Column::Id)
        .filter(Column::Enabled.eq(true))
        .filter(Column::State.eq(State::Active.as_str()))
        .order_by_asc(Column::Id)
        .into_tuple()
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(t, s)| (TenantId::from_uuid(t), SubscriptionId::from_uuid(s)))
        .collect())
}

/// Subscriptions per state (the `push_subscriptions` gauge). Not tenant data.
pub async fn states(db: &Db) -> Result<Vec<(State, bool, u64)>, StoreError> {
    let rows: Vec<(String, bool, i64)> = Entity::find()
        .select_only()
        .column(Column::State)
        .column(Column::Enabled)
        .column_as(Column::Id.count(), "n")
        .group_by(Column::State)
        .group_by(Column::Enabled)
        .into_tuple()
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(s, e, n)| (State::parse(&s), e, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// An update of the tenant's subscription that applies only while its cursor
/// is still `position` and `condition` holds: true when it did.
async fn swap(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    position: &str,
    condition: sea_orm::Condition,
    set: Vec<(Column, Expr)>,
) -> Result<bool, StoreError> {
    let mut update = Entity::update_many();
    for (column, value) in set {
        update = update.col_expr(column, value);
    }
    let result = update
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::Position.eq(position))
        .filter(condition)
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records the batch about to be sent, before it is sent (only when none is
/// pending and the API has not changed the subscription since `read_at`, its
/// `updated_at` as read), so a retry after any failure or crash sends the
/// same batch.
pub async fn begin_batch(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    (position, read_at): (&str, DateTime<Utc>),
    batch: &Pending,
) -> Result<bool, StoreError> {
    swap(
        db,
        tenant,
        id,
        position,
        sea_orm::Condition::all()
            .add(Column::PendingEnd.is_null())
            .add(Column::UpdatedAt.eq(read_at)),
        vec![
            (Column::PendingEnd, Expr::value(batch.end.as_str())),
            (Column::PendingId, Expr::value(batch.webhook_id.as_str())),
            (Column::PendingSignals, Expr::value(batch.json())),
        ],
    )
    .await
}

/// A batch the subscriber took.
#[derive(Debug, Clone, Copy)]
pub struct Taken<'a> {
    /// Its `webhook-id` (the pending batch must still be this one).
    pub webhook_id: &'a str,
    /// Its end: the new cursor.
    pub end: &'a str,
    /// Signals in it.
    pub count: u64,
    /// The answer's status.
    pub status: u16,
}

/// The pending batch was taken: the cursor moves to its end.
pub async fn delivered(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    position: &str,
    taken: Taken<'_>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let now = stored_time(now);
    swap(
        db,
        tenant,
        id,
        position,
        sea_orm::Condition::all().add(Column::PendingId.eq(taken.webhook_id)),
        vec![
            (Column::Position, Expr::value(taken.end)),
            (Column::PendingEnd, Expr::value(Option::<String>::None)),
            (Column::PendingId, Expr::value(Option::<String>::None)),
            (Column::PendingSignals, Expr::value(Option::<Value>::None)),
            (Column::Failures, Expr::value(0)),
            (
                Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            ),
            (Column::LastStatus, Expr::value(i32::from(taken.status))),
            (Column::LastError, Expr::value(Option::<String>::None)),
            (Column::LastAttemptAt, Expr::value(now)),
            (Column::LastDeliveredAt, Expr::value(now)),
            (
                Column::Delivered,
                Expr::col(Column::Delivered).add(i64::try_from(taken.count).unwrap_or(i64::MAX)),
            ),
        ],
    )
    .await
}

/// Moves the cursor past Signals that did not match the filters (nothing to send).
pub async fn skip(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    position: &str,
    to: &str,
) -> Result<bool, StoreError> {
    swap(
        db,
        tenant,
        id,
        position,
        sea_orm::Condition::all().add(Column::PendingEnd.is_null()),
        vec![(Column::Position, Expr::value(to))],
    )
    .await
}

/// A failed attempt of the pending batch.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The pending batch's `webhook-id`.
    pub webhook_id: String,
    /// Failed attempts in a row before this one (as read).
    pub before: u32,
    /// Failed attempts in a row, this one included.
    pub failures: u32,
    /// The status, if there was an answer.
    pub status: Option<u16>,
    /// What went wrong (scrubbed).
    pub error: String,
    /// When to try again (`None`: not on schedule).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The state after it.
    pub state: State,
}

/// Records a failed attempt.
pub async fn failed(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    position: &str,
    failure: Failure,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut set = vec![
        (
            Column::Failures,
            Expr::value(i32::try_from(failure.failures).unwrap_or(i32::MAX)),
        ),
        (
            Column::LastStatus,
            Expr::value(failure.status.map(i32::from)),
        ),
        (Column::LastError, Expr::value(failure.error)),
        (Column::LastAttemptAt, Expr::value(stored_time(now))),
        (
            Column::NextAttemptAt,
            Expr::value(failure.next_attempt_at.map(stored_time)),
        ),
        (Column::State, Expr::value(failure.state.as_str())),
    ];
    if failure.state == State::Disabled {
        set.push((Column::Enabled, Expr::value(false)));
    }
    // Still the same attempt: not re-enabled, reset or moved meanwhile.
    let condition = sea_orm::Condition::all()
        .add(Column::PendingId.eq(failure.webhook_id.as_str()))
        .add(Column::Failures.eq(i32::try_from(failure.before).unwrap_or(i32::MAX)))
        .add(Column::State.eq(State::Active.as_str()));
    swap(db, tenant, id, position, condition, set).await
}

/// Marks the subscription failing for a reason of its own (no attempt made:
/// its cursor cannot be read), if its cursor is still `position`.
pub async fn refuse(
    db: &Db,
    tenant: TenantId,
    id: SubscriptionId,
    position: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    swap(
        db,
        tenant,
        id,
        position,
        sea_orm::Condition::all().add(Column::State.eq(State::Active.as_str())),
        vec![
            (Column::LastError, Expr::value(why)),
            (Column::LastAttemptAt, Expr::value(stored_time(now))),
            (Column::State, Expr::value(State::Failing.as_str())),
        ],
    )
    .await
}

/// Every subscription's sealed secrets, for key rotation (cross-tenant, as
/// `keys::reencrypt_all`).
pub(crate) async fn all_sealed(db: &Db) -> Result<Vec<Model>, StoreError> {
    Ok(Entity::find().all(db.conn()).await?)
}

/// Re-seals a subscription's secrets; false when they changed meanwhile.
pub(crate) async fn swap_sealed(
    db: &Db,
    old: &Model,
    secret: Vec<u8>,
    previous: Option<Vec<u8>>,
) -> Result<bool, StoreError> {
    let mut update = Entity::update_many()
        .col_expr(Column::Secret, Expr::value(secret))
        .col_expr(Column::PreviousSecret, Expr::value(previous))
        .filter(Column::Id.eq(old.id))
        .filter(Column::Secret.eq(old.secret.clone()));
    update = match &old.previous_secret {
        Some(p) => update.filter(Column::PreviousSecret.eq(p.clone())),
        None => update.filter(Column::PreviousSecret.is_null()),
    };
    Ok(update.exec(db.conn()).await?.rows_affected == 1)
}

/// The binding of a subscription's sealed field (key rotation).
pub(crate) fn sealed_binding<'a>(m: &Model, field: &'a str) -> Binding<'a> {
    binding(
        TenantId::from_uuid(m.tenant_id),
        SubscriptionId::from_uuid(m.id),
        field,
    )
}
