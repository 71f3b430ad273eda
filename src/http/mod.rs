//! The HTTP edge: routes, extractors and error mapping. Thin by design: handlers
//! authenticate, validate and translate; the work happens in the layers below,
//! which know nothing of HTTP.

pub mod consent;
mod delivery;
mod embed;
pub mod error;
mod me;
mod ops;
pub mod overload;
pub mod ratelimit;
mod search;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Caller;
pub use error::ApiError;
pub use search::SCOPE_SEARCH;

/// Every route the broker serves.
pub fn router(state: Arc<AppState>) -> Router {
    // The API routes share one load-shedding gate; the operational ones stay
    // reachable when it is shut.
    let api = Router::new()
        .route("/api/rest/v2/debt/search", post(search::handler))
        // The push handler enforces its own (larger) limit while streaming.
        .route("/debt-information/v1/loans", post(delivery::push))
        // Consents (issue 5): the client API, the person's own view, the embedded page.
        .route("/v1/consent/agreement", put(consent::put_agreement))
        .route(
            "/v1/debt/{consent_id}",
            get(consent::get_debt).delete(consent::delete),
        )
        .route("/v1/debt/{consent_id}/status", get(consent::get_status))
        .route("/feed/v1/consent", get(consent::feed))
        .route("/v1/me/debt", get(me::debt))
        .route("/v1/me/consents", get(me::consents))
        .route(
            "/v1/me/consents/{consent_id}",
            axum::routing::delete(me::withdraw),
        )
        .route("/v1/me/disclosures", get(me::disclosures))
        .route("/embed/v1/session", post(embed::start_session))
        .route("/embed/v1/debt", get(embed::page))
        .route("/embed/v1/consent", post(embed::give_consent))
        .route("/embed/v1/consent/withdraw", post(embed::withdraw_consent))
        .route_layer(axum::middleware::from_fn_with_state(
            state.overload.clone(),
            overload::middleware,
        ));
    Router::new()
        .merge(api)
        .route("/admin/deliveries", get(ops::deliveries))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
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
    if let Some(org) = &caller.org_no
        && let Err(over) = app.limits.check(org)
    {
        app.metrics.rate_limited.with_label_values(&[org]).inc();
        return Err(ApiError::over_quota(over.limit, over.retry_after_secs));
    }
    Ok(caller)
}

/// Authenticates an organisation token and checks that the organisation holds one
/// of `roles` and the token carries `scope`. Returns the caller and its org number.
pub(crate) fn authorize_org(
    app: &AppState,
    headers: &HeaderMap,
    cert: &ClientCert,
    roles: &[crate::config::Role],
    scope: &str,
    who: &'static str,
) -> Result<(Caller, String), ApiError> {
    let caller = authenticate(app, headers, cert)?;
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
    if search::json_content_type_ok(headers) {
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
