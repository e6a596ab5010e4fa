//! Pending OAuth authorizations. The `state` is never stored, only its SHA-256;
//! it is single-use, expires, and is bound to the tenant and provider that
//! started the flow. The PKCE verifier is sealed.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::{Binding, KeyRing};
use crate::db::entities::oauth_state::{ActiveModel, Column, Entity};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::{ConnectionId, TenantId};

/// The AAD field of the sealed verifier.
const VERIFIER: &str = "pkce_verifier";

/// A flow to remember.
#[derive(Debug)]
pub struct NewState {
    /// The tenant connecting.
    pub tenant: TenantId,
    /// The connector.
    pub provider: String,
    /// The PKCE verifier, when PKCE is used.
    pub verifier: Option<String>,
    /// The redirect URI sent to the provider (needed again for the exchange).
    pub redirect_uri: String,
    /// Label of the connection to create.
    pub name: Option<String>,
    /// Config of the connection to create.
    pub config: Value,
    /// The connection to re-authorize in place instead.
    pub connection: Option<ConnectionId>,
    /// How long the state is valid.
    pub ttl: Duration,
}

/// A consumed flow.
#[derive(Debug)]
pub struct Consumed {
    /// The tenant that started it.
    pub tenant: TenantId,
    /// The PKCE verifier.
    pub verifier: Option<SecretString>,
    /// The redirect URI.
    pub redirect_uri: String,
    /// Label of the connection to create.
    pub name: Option<String>,
    /// Config of the connection to create.
    pub config: Value,
    /// The connection to re-authorize in place instead.
    pub connection: Option<ConnectionId>,
}

/// Why a state cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Never issued (or forged).
    #[error("unknown state")]
    Unknown,
    /// Issued for another provider.
    #[error("the state was issued for another provider")]
    WrongProvider,
    /// Already used.
    #[error("the state was already used")]
    Used,
    /// Too old.
    #[error("the state has expired; start the connection again")]
    Expired,
}

fn hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Stores a new flow; returns the state to send and when it expires.
pub async fn create(
    db: &Db,
    keys: &KeyRing,
    new: NewState,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), StoreError> {
    let state = db.ambient().token(32);
    let id = Uuid::now_v7();
    let expires = stored_time(now + new.ttl);
    let verifier = new.verifier.map(|v| {
        keys.seal(
            v.as_bytes(),
            Binding {
                tenant: new.tenant,
                record: ConnectionId::from_uuid(id),
                field: VERIFIER,
            },
        )
    });
    ActiveModel {
        state_hash: Set(hash(&state)),
        id: Set(id),
        tenant_id: Set(*new.tenant.as_uuid()),
        provider: Set(new.provider),
        pkce_verifier: Set(verifier),
        redirect: Set(Some(new.redirect_uri)),
        expires_at: Set(expires),
        used_at: Set(None),
        created_at: Set(stored_time(now)),
        connection_name: Set(new.name),
        connection_config: Set(Some(new.config)),
        connection_id: Set(new.connection.map(|c| *c.as_uuid())),
    }
    .insert(db.conn())
    .await?;
    Ok((state, expires))
}

/// Uses a state once: it must exist, be for `provider`, unused and unexpired.
pub async fn consume(
    db: &Db,
    keys: &KeyRing,
    provider: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Result<Consumed, StateError>, StoreError> {
    let key = hash(state);
    let now = stored_time(now);
    // Atomic: of two concurrent callbacks with one state, one wins.
    let updated = Entity::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .filter(Column::StateHash.eq(key.clone()))
        .filter(Column::Provider.eq(provider))
        .filter(Column::UsedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .exec(db.conn())
        .await?;
    let Some(row) = Entity::find_by_id(key).one(db.conn()).await? else {
        return Ok(Err(StateError::Unknown));
    };
    if updated.rows_affected != 1 {
        return Ok(Err(if row.provider != provider {
            StateError::WrongProvider
        } else if row.used_at.is_some() {
            StateError::Used
        } else {
            StateError::Expired
        }));
    }
    let tenant = TenantId::from_uuid(row.tenant_id);
    let verifier = match &row.pkce_verifier {
        None => None,
        Some(sealed) => {
            let plain = zeroize::Zeroizing::new(keys.open(
                sealed,
                Binding {
                    tenant,
                    record: ConnectionId::from_uuid(row.id),
                    field: VERIFIER,
                },
            )?);
            Some(SecretString::from(
                String::from_utf8_lossy(&plain).into_owned(),
            ))
        }
    };
    Ok(Ok(Consumed {
        tenant,
        verifier,
        redirect_uri: row.redirect.unwrap_or_default(),
        name: row.connection_name,
        config: row
            .connection_config
            .unwrap_or(Value::Object(Default::default())),
        connection: row.connection_id.map(ConnectionId::from_uuid),
    }))
}
