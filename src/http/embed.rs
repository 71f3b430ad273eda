//! The embeddable page for partners' iframes:
//!
//! - `POST /embed/v1/session` (form: `token`, `partner`, `ref?`): starts the
//!   person's session (cookie) and redirects to the page;
//! - `GET /embed/v1/debt?partner=&ref=`: the page (session cookie, or a bearer
//!   person token);
//! - `POST /embed/v1/consent` and `POST /embed/v1/consent/withdraw`: the buttons
//!   (session cookie + CSRF token), each redirecting back to the page.
//!
//! See [`crate::embed`] for why it is built this way.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::ApiError;
use super::trace::TraceId;
use crate::app::AppState;
use crate::config::{ClientConfig, Role};
use crate::consent::{self, ConsentError, CreateRequest, GivenVia, Scope};
use crate::embed::{self, page};
use crate::nin::NationalId;

/// Days a consent given in the page lasts: the presentation purpose's maximum.
const EMBED_CONSENT_DAYS: u32 = 365;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    partner: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    done: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SessionForm {
    token: Option<String>,
    partner: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    csrf: Option<String>,
    partner: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    consent_id: Option<String>,
}

/// The partner named in the request: a registered partner with embed origins.
fn partner<'a>(app: &'a AppState, org: Option<&str>) -> Result<&'a ClientConfig, ApiError> {
    let org = org
        .filter(|o| crate::config::is_org_no(o))
        .ok_or_else(|| ApiError::bad_request("partner must be a 9-digit organisation number"))?;
    app.config
        .client(org)
        .filter(|c| c.roles.contains(&Role::Partner) && !c.embed_origins.is_empty())
        .ok_or_else(|| ApiError::forbidden("this organisation may not embed the page"))
}

fn reference(r: Option<&str>) -> Result<Option<&str>, ApiError> {
    match r.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if embed::valid_reference(r) => Ok(Some(r)),
        Some(_) => Err(ApiError::bad_request(
            "ref must be at most 64 of A-Z a-z 0-9 . _ : - and hold no national id",
        )),
    }
}

/// Checks a person token; returns the person.
fn person_of(app: &AppState, token: &str) -> Result<NationalId, ApiError> {
    let caller = app.auth.authenticate(Some(&format!("Bearer {token}")))?;
    match (caller.person, caller.org_no) {
        (Some(p), None) => Ok(p),
        _ => Err(ApiError::forbidden("the page needs a person token")),
    }
}

/// The session: the cookie's token, else a bearer person token. Returns the
/// person and the token (the CSRF token is derived from it).
fn session(app: &AppState, headers: &HeaderMap) -> Result<(NationalId, String), ApiError> {
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(embed::token_from_cookies)
        .map(str::to_owned);
    let token = match from_cookie {
        Some(t) => t,
        None => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::from(crate::auth::AuthError::Unauthenticated(
                        "no session: the partner must start one",
                    ))
                })?;
            auth.to_owned()
        }
    };
    Ok((person_of(app, &token)?, token))
}

/// `303` back to the page, with what just happened.
fn back_to_page(partner: &str, reference: Option<&str>, done: &str) -> Response {
    let mut url = format!("/embed/v1/debt?partner={partner}");
    if let Some(r) = reference {
        url.push_str("&ref=");
        url.push_str(r);
    }
    if !done.is_empty() {
        url.push_str("&done=");
        url.push_str(done);
    }
    redirect(&url)
}

fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, v),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => ApiError::bad_request("bad redirect").into_response(),
    }
}

/// `POST /embed/v1/session`.
pub async fn start_session(
    State(app): State<Arc<AppState>>,
    Form(form): Form<SessionForm>,
) -> Result<Response, ApiError> {
    let token = form.token.as_deref().map(str::trim).unwrap_or_default();
    person_of(&app, token)?;
    let p = partner(&app, form.partner.as_deref())?;
    let r = reference(form.reference.as_deref())?;
    let mut response = back_to_page(&p.org_no, r, "");
    let cookie = HeaderValue::from_str(&embed::session_cookie(token))
        .map_err(|_| ApiError::bad_request("malformed token"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /embed/v1/debt`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = partner(&app, q.partner.as_deref())?;
    let r = reference(q.reference.as_deref())?;
    let (nin, token) = session(&app, &headers)?;
    // The person's own view: the partner frames it but cannot read it (another
    // origin), so nothing is disclosed to the partner and nothing recorded.
    // The register's debt only: the page sits in a partner's frame, and other
    // kinds of debt are shown there only under a consent that names them.
    let (debt, stats) =
        super::me::own_debt(&app, nin, gjeldsbro_adapter::KindSet::UNSECURED, &trace_id).await;
    let now = OffsetDateTime::now_utc();
    let active: Vec<page::ActiveConsent> = app
        .lookup
        .store
        .consents_of_person(nin)
        .await
        .map_err(|e| super::consent::api_error(ConsentError::Store(e), &trace_id))?
        .into_iter()
        .filter(|c| {
            c.client_org == p.org_no
                && c.scope == Scope::Presentation.as_str()
                && consent::rules::state(c, now) == consent::State::Active
        })
        .map(|c| page::ActiveConsent {
            id: c.id,
            ends_at: c.ends_at,
            one_time: c.one_time,
        })
        .collect();
    let notice = match q.done.as_deref() {
        Some("gitt") => Some(page::Notice::Given),
        Some("trukket") => Some(page::Notice::Withdrawn),
        _ => None,
    };
    let nonce = embed::nonce();
    let csrf = embed::csrf_token(&app.config, &token);
    let html = page::render(&page::Page {
        partner_name: &p.name,
        partner_org: &p.org_no,
        reference: r,
        debt: &debt,
        active: &active,
        csrf: &csrf,
        nonce: &nonce,
        notice,
        consent_days: EMBED_CONSENT_DAYS,
    });
    tracing::info!(trace_id = %trace_id, purpose = "own_view", channel = "embed", partner = %p.org_no,
        person = %app.hasher.hash(nin), fan_out = stats.fan_out,
        missing = debt.number_of_creditors_missing, status = 200,
        lender_wait_ms = stats.lender_wait.as_secs_f64() * 1e3,
        total_ms = stats.total.as_secs_f64() * 1e3, "lookup");
    let csp = HeaderValue::from_str(&embed::content_security_policy(&p.embed_origins, &nonce))
        .map_err(|_| ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR))?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html,
    )
        .into_response())
}

/// The session and partner of a button press, after the CSRF check.
fn form_session<'a>(
    app: &'a AppState,
    headers: &HeaderMap,
    form: &ConsentForm,
) -> Result<(NationalId, &'a ClientConfig), ApiError> {
    let (nin, token) = session(app, headers)?;
    let given = form.csrf.as_deref().unwrap_or_default();
    if !embed::csrf_ok(&app.config, &token, given) {
        return Err(ApiError::forbidden(
            "the form is stale or forged; reload the page",
        ));
    }
    Ok((nin, partner(app, form.partner.as_deref())?))
}

/// `POST /embed/v1/consent`: the person gives the partner a presentation consent.
pub async fn give_consent(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ApiError> {
    let (nin, p) = form_session(&app, &headers, &form)?;
    let r = reference(form.reference.as_deref())?;
    // The partner finds the consent in its feed by its own `ref` before the `/`.
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let client_consent_id = match r {
        Some(r) => format!("{r}/{suffix}"),
        None => format!("embed/{suffix}"),
    };
    let req = CreateRequest {
        client_org: p.org_no.clone(),
        client_consent_id,
        nin,
        scope: Scope::Presentation,
        kinds: gjeldsbro_adapter::KindSet::NONE,
        requested_days: EMBED_CONSENT_DAYS,
        given_via: GivenVia::Person,
    };
    let c = consent::create(&*app.lookup.store, &req, OffsetDateTime::now_utc())
        .await
        .map_err(|e| super::consent::api_error(e, &trace_id))?;
    tracing::info!(trace_id = %trace_id, partner = %p.org_no, consent_id = %c.id,
        person = %app.hasher.hash(nin), "consent given in the embedded page");
    Ok(back_to_page(&p.org_no, r, "gitt"))
}

/// `POST /embed/v1/consent/withdraw`.
pub async fn withdraw_consent(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ApiError> {
    let (nin, p) = form_session(&app, &headers, &form)?;
    let r = reference(form.reference.as_deref())?;
    let id = form.consent_id.as_deref().unwrap_or_default();
    if !consent::is_consent_id(id) {
        return Err(ApiError::bad_request("not a consent id"));
    }
    let c = match consent::of_person(&*app.lookup.store, id, nin).await {
        Ok(c) if c.client_org == p.org_no => c,
        Ok(_) | Err(ConsentError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "you have no such consent for this partner",
            ));
        }
        Err(e) => return Err(super::consent::api_error(e, &trace_id)),
    };
    let at = crate::time::format_fixed(OffsetDateTime::now_utc());
    app.lookup
        .store
        .archive_consent(&c.id, &at, "person")
        .await
        .map_err(|e| super::consent::api_error(ConsentError::Store(e), &trace_id))?;
    tracing::info!(trace_id = %trace_id, partner = %p.org_no, consent_id = %c.id,
        "consent withdrawn in the embedded page");
    Ok(back_to_page(&p.org_no, r, "trukket"))
}
