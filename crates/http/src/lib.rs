//! The HTTP edge: routes, extractors and error mapping. Thin by design: handlers
//! authenticate, validate and translate; the work happens in the layers below,
//! which know nothing of HTTP.

pub mod app;
mod authn;
mod buffer;
pub mod deadline;
mod embed_headers;
mod embed_page;
pub mod error;
pub mod ops;
pub mod overload;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod trace;

// The core's modules, under the paths the handlers use.
use gjeldsbro_broker::{
    auth, config, consent, disclose, embed, ingest, lookup, metrics, model, nin, redact, search,
    store, time, tls,
};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Caller;
pub use error::ApiError;
pub use routes::search::SCOPE_SEARCH;

/// The most an embedded page's form post may hold: a token, a partner, a
/// reference and a CSRF token, never more.
const EMBED_FORM_MAX_BYTES: usize = 16 * 1024;

/// Every route the public listener serves.
pub fn router(state: Arc<AppState>) -> Router {
    // The API routes share one load-shedding gate; the operational ones stay
    // reachable when it is shut. Layers run last-added first, so a request is
    // authenticated from its headers (and counted against its quota), then has
    // its small body read whole, and only then waits for a slot. They are put on
    // each method's handler, not the route, so a wrong method is still `405`.
    let overload =
        || axum::middleware::from_fn_with_state(state.overload.clone(), overload::middleware);
    let buffered = |limit: usize| axum::middleware::from_fn_with_state(limit, buffer::middleware);
    let authenticated = || axum::middleware::from_fn_with_state(state.clone(), authn::middleware);
    let max_body = state.config.max_body_bytes;
    let api = |m: MethodRouter<Arc<AppState>>| {
        m.route_layer(overload())
            .route_layer(buffered(max_body))
            .route_layer(authenticated())
    };
    // The organisations' routes: a person's token is refused there before its
    // body is read or a slot taken (the handlers check roles and scopes).
    let org_api = |m: MethodRouter<Arc<AppState>>| {
        m.route_layer(overload())
            .route_layer(buffered(max_body))
            .route_layer(axum::middleware::from_fn(authn::organisations_only))
            .route_layer(authenticated())
    };
    // The push handler enforces its own (larger) limit while streaming, so its
    // body is read under the slot; only an authenticated caller gets there.
    let push =
        |m: MethodRouter<Arc<AppState>>| m.route_layer(overload()).route_layer(authenticated());
    // The embedded page and its buttons: the session comes from the cookie, so
    // it is checked before the small form body is read and before a slot.
    let embed_session =
        || axum::middleware::from_fn_with_state(state.clone(), routes::embed::session_layer);
    let embedded = |m: MethodRouter<Arc<AppState>>| {
        m.route_layer(overload())
            .route_layer(buffered(EMBED_FORM_MAX_BYTES))
            .route_layer(embed_session())
            .layer(DefaultBodyLimit::max(EMBED_FORM_MAX_BYTES))
    };
    // Opening a session: the credential (the embed token) is in the form body,
    // so it cannot be checked from the headers. The body is small and read
    // under the body deadline; the route takes no overload slot at all (it
    // calls no lender: one token check, one claim and one insert), so an
    // unauthenticated post never holds one. Persons' quotas bound the rest.
    let session_form =
        |m: MethodRouter<Arc<AppState>>| m.layer(DefaultBodyLimit::max(EMBED_FORM_MAX_BYTES));
    let routes = Router::new()
        .route(
            "/api/rest/v2/debt/search",
            org_api(post(routes::search::handler)),
        )
        .route(
            "/debt-information/v1/loans",
            push(post(routes::delivery::push)),
        )
        // Consents (issue 5): the client API, the person's own view, the embedded page.
        .route(
            "/v1/consent/agreement",
            org_api(put(routes::consent::put_agreement)),
        )
        .route(
            "/v1/debt/{consent_id}",
            org_api(get(routes::consent::get_debt).delete(routes::consent::delete)),
        )
        .route(
            "/v1/debt/{consent_id}/status",
            org_api(get(routes::consent::get_status)),
        )
        .route("/feed/v1/consent", org_api(get(routes::consent::feed)))
        .route("/v1/me/debt", api(get(routes::me::debt)))
        .route("/v1/me/consents", api(get(routes::me::consents)))
        .route(
            "/v1/me/consents/{consent_id}",
            api(axum::routing::delete(routes::me::withdraw)),
        )
        .route("/v1/me/disclosures", api(get(routes::me::disclosures)))
        .route(
            "/embed/v1/session",
            session_form(post(routes::embed::start_session)),
        )
        .route("/embed/v1/debt", embedded(get(routes::embed::page)))
        .route(
            "/embed/v1/consent",
            embedded(post(routes::embed::give_consent)),
        )
        .route(
            "/embed/v1/consent/withdraw",
            embedded(post(routes::embed::withdraw_consent)),
        );
    let body_deadline = std::time::Duration::from_secs(state.config.server.body_read_timeout_secs);
    routes
        .route("/admin/deliveries", get(ops::deliveries))
        // For load balancers: status only. Metrics and detail are on `ops_listen`.
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz_bare))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            body_deadline,
            deadline::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            trace::middleware,
        ))
        .with_state(state)
}

/// What the operations listener serves: metrics, detailed readiness, liveness.
pub fn ops_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(4096))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            trace::middleware,
        ))
        .with_state(state)
}

async fn fallback() -> ApiError {
    ApiError::for_status(StatusCode::NOT_FOUND)
}

/// The verified client certificate's identity, on a TLS connection that has one.
pub(crate) type ClientCert = Option<axum::Extension<crate::tls::PeerIdentity>>;

/// Authenticates the request's bearer token and/or client certificate.
pub(crate) fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    cert: &ClientCert,
) -> Result<Caller, ApiError> {
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::from(crate::auth::AuthError::Unauthenticated(
                "malformed Authorization header",
            ))
        })?),
    };
    let caller = app
        .auth
        .authenticate_request(authorization, cert.as_ref().map(|c| &c.0))?;
    match (&caller.org_no, caller.person) {
        (Some(org), _) => {
            if let Err(over) = app.limits.check(org) {
                app.metrics.rate_limited.with_label_values(&[org]).inc();
                return Err(ApiError::over_quota(over.limit, over.retry_after_secs));
            }
        }
        // A person is counted here too, before any body or slot: on every
        // route, not only where the person may go.
        (None, Some(person)) => routes::me::person_quota(app, person)?,
        (None, None) => {}
    }
    Ok(caller)
}

/// Checks that the authenticated caller (see [`authn`]) is an organisation
/// holding one of `roles` with a token carrying `scope`. Returns the caller and
/// its org number.
pub(crate) fn authorize_org(
    caller: Caller,
    roles: &[crate::config::Role],
    scope: &str,
    who: &'static str,
) -> Result<(Caller, String), ApiError> {
    let Some(org) = caller.org_no.clone() else {
        return Err(ApiError::forbidden(who));
    };
    if !roles.iter().any(|r| caller.has_role(*r)) {
        return Err(ApiError::forbidden(who));
    }
    if !caller.has_scope(scope) {
        return Err(ApiError::forbidden(format!(
            "the token lacks the {scope} scope"
        )));
    }
    Ok((caller, org))
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if routes::search::json_content_type_ok(headers) {
        Ok(())
    } else {
        Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
    }
}

/// A `200` JSON answer with `Cache-Control: no-store` (answers hold personal data).
pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    }
}
