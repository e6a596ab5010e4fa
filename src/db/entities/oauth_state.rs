//! `oauth_states`: single-use OAuth `state` values, stored hashed.

use sea_orm::entity::prelude::*;

/// A pending authorization.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_states")]
pub struct Model {
    /// SHA-256 of the state (the state itself is never stored).
    #[sea_orm(primary_key, auto_increment = false)]
    pub state_hash: String,
    /// Id binding the sealed verifier.
    pub id: Uuid,
    /// Tenant that started the flow.
    pub tenant_id: Uuid,
    /// Connector id.
    pub provider: String,
    /// Sealed PKCE verifier.
    pub pkce_verifier: Option<Vec<u8>>,
    /// Where to send the user afterwards.
    pub redirect: Option<String>,
    /// Expiry.
    pub expires_at: DateTimeUtc,
    /// Set when consumed.
    pub used_at: Option<DateTimeUtc>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Label of the connection to create.
    pub connection_name: Option<String>,
    /// Config of the connection to create.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub connection_config: Option<Json>,
    /// The connection re-authorized in place (none: a new one is created).
    pub connection_id: Option<Uuid>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
