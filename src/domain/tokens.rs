//! OAuth tokens as the provider issued them: what the token endpoint answers,
//! what storage seals onto a connection, what the refresh keeps.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};

/// Tokens from the token endpoint.
pub struct TokenSet {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, when one was issued.
    pub refresh_token: Option<SecretString>,
    /// When the access token expires, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// The response without its secrets, flattened one level (`team.id` →
    /// `team_id`), for connection metadata and webhook routing.
    pub metadata: Map<String, Value>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<set>"),
            )
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}
