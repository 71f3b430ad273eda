//! Callers with a verified client certificate (mTLS), alone or with a token.
//!
//! - Certificate alone: the organisation from the certificate, roles from
//!   `[[clients]]`, and every scope those roles imply ([`scopes_for_roles`]): the
//!   registry grants an organisation its roles, and a certificate is the
//!   organisation itself, with no token to narrow it.
//! - Certificate and token: the token must name the same organisation (else
//!   401: the two credentials disagree about who is calling); the token's own
//!   scopes then apply, so a token can narrow what a connection may do.
//! - A certificate that names no organisation (no `organizationIdentifier`, or
//!   not `NTRNO-<9 digits>`): 401.
//! - An organisation not in `[[clients]]`: 403, as for tokens.

use super::{AuthError, Authenticator, Caller};
use crate::config::Role;
use crate::tls::PeerIdentity;

/// The scopes a role implies for a certificate caller without a token.
pub fn scopes_for_role(role: Role) -> &'static [&'static str] {
    match role {
        Role::FinancialInstitution => &[
            "debt.search",
            "debt.unsecured.processing",
            "consent.create",
            "client.access.consent.events",
        ],
        Role::CreditBureau => &["debt.search"],
        Role::Partner => &[
            "debt.unsecured.presentation",
            "debt.unsecured.processing",
            "consent.create",
            "client.access.consent.events",
        ],
        Role::Lender => &["debt.delivery"],
        // Operator endpoints check the role, not a scope.
        Role::Operator => &[],
    }
}

/// Every scope implied by `roles`, each once, in a stable order.
pub fn scopes_for_roles(roles: &[Role]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in roles.iter().flat_map(|r| scopes_for_role(*r)) {
        if !out.iter().any(|s| s == scope) {
            out.push((*scope).to_owned());
        }
    }
    out
}

impl Authenticator {
    /// Authenticates a request from its `Authorization` header and, on a TLS
    /// connection, its verified client certificate.
    pub fn authenticate_request(
        &self,
        authorization: Option<&str>,
        peer: Option<&PeerIdentity>,
    ) -> Result<Caller, AuthError> {
        let Some(peer) = peer else {
            return self.authenticate(authorization);
        };
        let result = self.check_with_cert(authorization, peer);
        if let Err(e) = &result {
            // The reason only: never the certificate, the token or a claim.
            tracing::debug!(
                reason = e.reason(),
                refused = e.kind(),
                "certificate caller refused"
            );
        }
        result
    }

    fn check_with_cert(
        &self,
        authorization: Option<&str>,
        peer: &PeerIdentity,
    ) -> Result<Caller, AuthError> {
        let org = match peer {
            PeerIdentity::Organisation(org) => org,
            PeerIdentity::NoOrganisation(why) => return Err(AuthError::Unauthenticated(why)),
        };
        let client = self.clients.get(org).ok_or(AuthError::Forbidden(
            "organisation is not a registered client",
        ))?;
        if authorization.is_some() {
            let caller = self.check(authorization)?;
            if caller.org_no.as_deref() != Some(org.as_str()) {
                return Err(AuthError::Unauthenticated(
                    "the token's organisation is not the client certificate's",
                ));
            }
            return Ok(caller);
        }
        Ok(Caller {
            org_no: Some(org.clone()),
            org_name: Some(client.name.clone()),
            roles: client.roles.clone(),
            scopes: scopes_for_roles(&client.roles),
            person: None,
            client_id: None,
            token_id: None,
        })
    }
}
