//! The embeddable page for partners' iframes:
//!
//! - `POST /embed/v1/session` (form: `token`, `partner`, `ref?`): checks the
//!   embed token, claims it (once), starts the broker's own session (cookie)
//!   and redirects to the page;
//! - `GET /embed/v1/debt?partner=&ref=`: the page (session cookie only);
//! - `POST /embed/v1/consent` and `POST /embed/v1/consent/withdraw`: the buttons
//!   (session cookie + the session's CSRF token), each redirecting back to the
//!   page.
//!
//! No route here takes a bearer token: a request to `/embed/*` with an
//! `Authorization` header is refused (`401`), whatever else it carries, so a
//! token the partner holds never reaches the page or its buttons. Every route
//! counts against the person's quota. See [`crate::embed`] for why it is built
//! this way.

use std::sync::Arc;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::AuthError;
use crate::config::{ClientConfig, Role};
use crate::consent::{self, ConsentError, CreateRequest, GivenVia, Scope};
use crate::embed;
use crate::embed_page as page;
use crate::error::ApiError;
use crate::nin::NationalId;
use crate::store::NewEmbedSession;
use crate::trace::TraceId;

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

/// Refuses a request that carries a bearer token: the page and its buttons
/// take the broker's session and nothing else.
fn refuse_bearer(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::from(AuthError::Unauthenticated(
            "the embedded page takes no bearer token: the partner's page opens a session with an embed token",
        )));
    }
    Ok(())
}

/// A session of the page, in force.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The cookie's id (the CSRF token is derived from it).
    id: String,
    nin: NationalId,
    partner_org: String,
}

/// The request's session: the cookie's id, found in the store and in force
/// (its idle end moved on). Counts against the person's quota.
async fn session(app: &AppState, headers: &HeaderMap, trace_id: &str) -> Result<Session, ApiError> {
    refuse_bearer(headers)?;
    let no_session = || {
        ApiError::from(AuthError::Unauthenticated(
            "no session, or it has ended: the partner's page starts one",
        ))
    };
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(crate::embed_headers::session_id_from_cookies)
        .and_then(|value| embed::session_id_of_cookie(&app.config, value))
        .ok_or_else(no_session)?
        .to_owned();
    let now = OffsetDateTime::now_utc();
    let idle_until = now + Duration::from_secs(app.config.embed.session_idle_secs());
    let found = app
        .lookup
        .store
        .touch_embed_session(
            &embed::session_id_hash(&id),
            &crate::time::format_fixed(now),
            &crate::time::format_fixed(idle_until),
        )
        .await
        .map_err(|e| super::consent::api_error(ConsentError::Store(e), trace_id))?
        .ok_or_else(no_session)?;
    super::me::person_quota(app, found.nin)?;
    Ok(Session {
        id,
        nin: found.nin,
        partner_org: found.partner_org,
    })
}

/// The page and its buttons, as a layer outside load shedding and before the
/// form body is read: the session comes from the cookie (a header), so a request
/// without one in force is answered `401` without holding a slot or having its
/// body read; the handler finds the [`Session`] in the request's extensions.
pub(crate) async fn session_layer(
    State(app): State<Arc<AppState>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let trace_id = request
        .extensions()
        .get::<TraceId>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    match session(&app, request.headers(), &trace_id).await {
        Ok(sess) => {
            request.extensions_mut().insert(sess);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The partner of a request in `session`: the one the session was opened for.
/// A request naming another is refused.
fn session_partner<'a>(
    app: &'a AppState,
    session: &Session,
    named: Option<&str>,
) -> Result<&'a ClientConfig, ApiError> {
    if named.is_some_and(|n| n != session.partner_org) {
        return Err(ApiError::forbidden(
            "this session was opened for another partner",
        ));
    }
    partner(app, Some(&session.partner_org))
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

/// `POST /embed/v1/session`: the embed token is checked, claimed once, and
/// exchanged for a session of the broker's own.
pub async fn start_session(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    Form(form): Form<SessionForm>,
) -> Result<Response, ApiError> {
    refuse_bearer(&headers)?;
    let token = form.token.as_deref().map(str::trim).unwrap_or_default();
    let grant = app
        .auth
        .authenticate_embed(token, app.config.embed.token_max_lifetime_secs())?;
    let p = partner(&app, form.partner.as_deref())?;
    let r = reference(form.reference.as_deref())?;
    super::me::person_quota(&app, grant.person)?;
    let store = &app.lookup.store;
    let unavailable = |e| super::consent::api_error(ConsentError::Store(e), &trace_id);
    let now = OffsetDateTime::now_utc();
    // The claim lasts as long as the token could still be accepted.
    let token_end = i64::try_from(grant.expires_at.saturating_add(app.config.auth.leeway_secs))
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(now + Duration::from_secs(3600));
    let fresh = store
        .claim_embed_token(
            &grant.token_id,
            &crate::time::format_fixed(token_end),
            &crate::time::format_fixed(now),
        )
        .await
        .map_err(unavailable)?;
    if !fresh {
        return Err(ApiError::from(AuthError::Unauthenticated(
            "this embed token has opened a session already: mint one per page load",
        )));
    }
    let id = embed::new_session_id();
    let max = app.config.embed.session_max_secs();
    let idle = app.config.embed.session_idle_secs();
    store
        .create_embed_session(&NewEmbedSession {
            id_hash: embed::session_id_hash(&id),
            nin: grant.person,
            partner_org: p.org_no.clone(),
            created_at: crate::time::format_fixed(now),
            idle_until: crate::time::format_fixed(now + Duration::from_secs(idle)),
            ends_at: crate::time::format_fixed(now + Duration::from_secs(max)),
        })
        .await
        .map_err(unavailable)?;
    tracing::info!(trace_id = %trace_id, partner = %p.org_no,
        person = %app.hasher.hash(grant.person), "embed session opened");
    let mut response = back_to_page(&p.org_no, r, "");
    let cookie = HeaderValue::from_str(&crate::embed_headers::session_cookie(
        &embed::session_cookie_value(&app.config, &id),
        max,
    ))
    .map_err(|_| ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /embed/v1/debt`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(sess): Extension<Session>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let r = reference(q.reference.as_deref())?;
    let p = session_partner(&app, &sess, q.partner.as_deref())?;
    let nin = sess.nin;
    // The person's own view: the partner frames it but cannot read it (another
    // origin), so nothing is disclosed to the partner and nothing recorded.
    // The register's debt only: the page sits in a partner's frame, and other
    // kinds of debt are shown there only under a consent that names them.
    let (debt, stats) =
        super::me::own_debt(&app, nin, gjeldsbro_adapter::KindSet::UNSECURED, &trace_id).await;
    // Every consent the partner holds for the person, whatever its scope: the
    // person must be able to see and withdraw each one here.
    let now = OffsetDateTime::now_utc();
    let store = &app.lookup.store;
    let unavailable = |e| super::consent::api_error(ConsentError::Store(e), &trace_id);
    let uses = store
        .consent_uses_of_person(nin)
        .await
        .map_err(unavailable)?;
    let active: Vec<page::ActiveConsent> = store
        .consents_of_person(nin)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|c| {
            c.client_org == p.org_no && consent::rules::state(c, now) == consent::State::Active
        })
        .map(|c| page::ActiveConsent {
            scope_text: page::scope_text(&c.scope),
            presentation: consent::ConsentScope::parse(&c.scope)
                .is_ok_and(|s| s.purpose == Scope::Presentation),
            uses: uses
                .iter()
                .filter(|u| u.consent_id == c.id && u.outcome == "disclosed")
                .map(|u| u.at.clone())
                .collect(),
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
    let nonce = crate::embed_headers::nonce();
    let csrf = embed::csrf_token(&app.config, &sess.id);
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
    let csp = HeaderValue::from_str(&crate::embed_headers::content_security_policy(
        &p.embed_origins,
        &nonce,
    ))
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

/// The session and partner of a button press, after the CSRF check: the press
/// counts only in the session whose page carried the token.
fn form_session<'a>(
    app: &'a AppState,
    sess: &Session,
    form: &ConsentForm,
) -> Result<(NationalId, &'a ClientConfig), ApiError> {
    let given = form.csrf.as_deref().unwrap_or_default();
    if !embed::csrf_ok(&app.config, &sess.id, given) {
        return Err(ApiError::forbidden(
            "the form is stale or forged; reload the page",
        ));
    }
    Ok((
        sess.nin,
        session_partner(app, sess, form.partner.as_deref())?,
    ))
}

/// `POST /embed/v1/consent`: the person gives the partner a presentation
/// consent. The only way to a consent with `givenVia = person`: a press in a
/// session of the broker's, with that session's CSRF token.
pub async fn give_consent(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(sess): Extension<Session>,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ApiError> {
    let (nin, p) = form_session(&app, &sess, &form)?;
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
    Extension(sess): Extension<Session>,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ApiError> {
    let (nin, p) = form_session(&app, &sess, &form)?;
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
