//! `ui_sessions`: the dashboard's server-side sessions, keyed by a digest of
//! the cookie's id (the id itself is never stored).

use sea_orm::entity::prelude::*;

/// One session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ui_sessions")]
pub struct Model {
    /// SHA-256 (hex) of the session id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The session's data (JSON).
    pub data: String,
    /// When it expires.
    pub expires_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
