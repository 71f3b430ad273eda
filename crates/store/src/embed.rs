//! What the store keeps for the embedded page: the `jti` of each embed token
//! that opened a session (so each opens one), and the sessions themselves, by
//! the SHA-256 of their id. Times cross this boundary as fixed-width RFC 3339
//! UTC text, as for consents.

use gjeldsbro_domain::nin::NationalId;

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewEmbedSession {
    /// Hex SHA-256 of the cookie's random id.
    pub id_hash: String,
    pub nin: NationalId,
    pub partner_org: String,
    pub created_at: String,
    pub idle_until: String,
    pub ends_at: String,
}

/// A session in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSession {
    pub nin: NationalId,
    pub partner_org: String,
    pub ends_at: String,
}
