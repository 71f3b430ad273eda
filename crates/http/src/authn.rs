//! Authentication as a layer, outside load shedding: a request is checked from
//! its headers (bearer token, client certificate) and its organisation's quota
//! before any of its body is read and before it may take an overload slot. A
//! request without valid credentials is answered `401` at once and never holds
//! a slot; the handler finds the [`Caller`] in the request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::Caller;
use crate::tls::PeerIdentity;

pub async fn middleware(
    State(app): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let cert = request
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .map(axum::Extension);
    let caller: Caller = match super::authenticate(&app, request.headers(), &cert) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// After [`middleware`]: only an organisation may go on. A person's token is
/// refused here, before its body is read or an overload slot taken.
pub async fn organisations_only(request: Request, next: Next) -> Response {
    let is_org = request
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.org_no.is_some());
    if !is_org {
        return super::ApiError::forbidden("this route is for organisations, not a person's token")
            .into_response();
    }
    next.run(request).await
}
