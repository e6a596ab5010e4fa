//! Key rotation: re-seals every stored secret under the primary key. The one
//! repository function that crosses tenants (each row's own tenant binds its
//! value). Safe while the service runs: each row is swapped only if it still
//! holds the value that was read.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::crypto::{Binding, KeyRing};
use crate::db::entities::{connection, oauth_state};
use crate::db::{Db, StoreError};
use crate::domain::{ConnectionId, TenantId};

/// What a re-encryption pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Sealed values looked at.
    pub checked: u64,
    /// Values re-sealed under the primary key.
    pub resealed: u64,
    /// Values that changed under us (re-run to finish them).
    pub skipped_concurrent: u64,
}

/// The sealed columns of a connection and their AAD field names.
pub const CONNECTION_SECRETS: [(connection::Column, &str); 3] = [
    (connection::Column::Credentials, "credentials"),
    (connection::Column::AccessToken, "access_token"),
    (connection::Column::RefreshToken, "refresh_token"),
];

fn value_of(m: &connection::Model, column: connection::Column) -> Option<&Vec<u8>> {
    match column {
        connection::Column::Credentials => m.credentials.as_ref(),
        connection::Column::AccessToken => m.access_token.as_ref(),
        connection::Column::RefreshToken => m.refresh_token.as_ref(),
        _ => None,
    }
}

/// The value re-sealed under the primary key, or `None` when it already is.
fn reseal(keys: &KeyRing, old: &[u8], binding: Binding<'_>) -> Result<Option<Vec<u8>>, StoreError> {
    if !keys.needs_reseal(old) {
        return Ok(None);
    }
    let plain = zeroize::Zeroizing::new(keys.open(old, binding)?);
    Ok(Some(keys.seal(&plain, binding)))
}

/// Re-seals every connection secret, PKCE verifier and push signing secret that is not under the
/// primary key. A value that cannot be opened with any configured key is an
/// error (nothing after it is lost: re-run once the key is configured).
pub async fn reencrypt_all(db: &Db, keys: &KeyRing) -> Result<ReencryptReport, StoreError> {
    let mut report = ReencryptReport::default();
    for row in connection::Entity::find().all(db.conn()).await? {
        let tenant = TenantId::from_uuid(row.tenant_id);
        let record = ConnectionId::from_uuid(row.id);
        for (column, field) in CONNECTION_SECRETS {
            let Some(old) = value_of(&row, column) else {
                continue;
            };
            report.checked += 1;
            if !keys.needs_reseal(old) {
                continue;
            }
            let binding = Binding {
                tenant,
                record,
                field,
            };
            let plain = zeroize::Zeroizing::new(keys.open(old, binding)?);
            let new = keys.seal(&plain, binding);
            let swapped = connection::Entity::update_many()
                .col_expr(column, Expr::value(new))
                .filter(connection::Column::Id.eq(row.id))
                .filter(column.eq(old.clone()))
                .exec(db.conn())
                .await?;
            if swapped.rows_affected == 1 {
                report.resealed += 1;
            } else {
                report.skipped_concurrent += 1;
            }
        }
    }
    for row in oauth_state::Entity::find().all(db.conn()).await? {
        let Some(old) = &row.pkce_verifier else {
            continue;
        };
        report.checked += 1;
        let binding = Binding {
            tenant: TenantId::from_uuid(row.tenant_id),
            record: ConnectionId::from_uuid(row.id),
            field: "pkce_verifier",
        };
        let Some(new) = reseal(keys, old, binding)? else {
            continue;
        };
        let swapped = oauth_state::Entity::update_many()
            .col_expr(oauth_state::Column::PkceVerifier, Expr::value(new))
            .filter(oauth_state::Column::StateHash.eq(row.state_hash.clone()))
            .filter(oauth_state::Column::PkceVerifier.eq(old.clone()))
            .exec(db.conn())
            .await?;
        if swapped.rows_affected == 1 {
            report.resealed += 1;
        } else {
            report.skipped_concurrent += 1;
        }
    }
    for row in super::subscriptions::all_sealed(db).await? {
        use super::subscriptions::{PREVIOUS_SECRET, SECRET, sealed_binding, swap_sealed};
        report.checked += 1 + u64::from(row.previous_secret.is_some());
        let secret = reseal(keys, &row.secret, sealed_binding(&row, SECRET))?;
        let previous = match &row.previous_secret {
            Some(p) => reseal(keys, p, sealed_binding(&row, PREVIOUS_SECRET))?,
            None => None,
        };
        if secret.is_none() && previous.is_none() {
            continue;
        }
        let n = u64::from(secret.is_some()) + u64::from(previous.is_some());
        let secret = secret.unwrap_or_else(|| row.secret.clone());
        let previous = previous.or_else(|| row.previous_secret.clone());
        if swap_sealed(db, &row, secret, previous).await? {
            report.resealed += n;
        } else {
            report.skipped_concurrent += n;
        }
    }
    Ok(report)
}
