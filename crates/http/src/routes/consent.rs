//! The consent API for client organisations: `PUT /v1/consent/agreement`,
//! `GET /v1/debt/{consentId}`, `GET /v1/debt/{consentId}/status`,
//! `DELETE /v1/debt/{consentId}` and `GET /feed/v1/consent`.
//!
//! A consent exists only for the organisation that created it: every other
//! organisation gets the same `403` for it as for an id nobody issued (same
//! error code and description; only `timestamp` and `trace_id` differ), before
//! any lender is asked and without a word about whose it is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::consent::{
    self, ConsentError, CreateRequest, GivenVia, SCOPE_CREATE, SCOPE_EVENTS, Scope,
};
use crate::error::ApiError;
use crate::nin::NationalId;
use crate::store::StoredConsent;
use crate::trace::TraceId;

/// The one answer for a consent id that is not the caller's, whether it exists or not.
pub const NO_SUCH_CONSENT: &str = "no consent with this id for this client";
const MAX_CLIENT_CONSENT_ID: usize = 100;
/// Time the lenders get in a consent lookup (the search's default).
const LOOKUP_WAIT: Duration = Duration::from_millis(3_000);
const DEFAULT_FEED_LIMIT: u32 = 100;
const MAX_FEED_LIMIT: u32 = 1_000;

#[derive(Debug, Deserialize)]
struct AgreementBody {
    nin: Option<String>,
    scope_of_consent: Option<String>,
    consent_duration_days: Option<i64>,
    client_consent_id: Option<String>,
}

/// Maps the consent layer's errors to the registry's error JSON.
pub(crate) fn api_error(e: ConsentError, trace_id: &str) -> ApiError {
    match e {
        ConsentError::NotFound => ApiError::forbidden(NO_SUCH_CONSENT),
        ConsentError::Inactive(state) => ApiError::forbidden(state.refusal()),
        ConsentError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "client_consent_id was used before with other data",
        ),
        ConsentError::Store(e) => {
            tracing::error!(trace_id = %trace_id, error = %e, "consent store unavailable");
            ApiError::unavailable("the consent store is unavailable; nothing was disclosed")
        }
    }
}

/// An organisation token (a person token alone is refused).
fn org_caller(caller: Caller) -> Result<(Caller, String), ApiError> {
    match caller.org_no.clone() {
        Some(org) => Ok((caller, org)),
        None => Err(ApiError::forbidden(
            "the consent API is for client organisations",
        )),
    }
}

fn has_any_consent_scope(caller: &Caller) -> bool {
    Scope::ALL.iter().any(|s| caller.has_scope(s.as_str()))
}

/// A client's reference: short, printable, and not something that could be a
/// national id (it is echoed in feeds and stored in the disclosure log).
pub(crate) fn valid_client_reference(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= MAX_CLIENT_CONSENT_ID
        && s.chars().all(|c| !c.is_control())
        && !s
            .split(|c: char| !c.is_ascii_digit())
            .any(|run| run.len() >= 11)
}

fn agreement_answer(c: &StoredConsent) -> Response {
    crate::json_response(&json!({
        "client_consent_id": c.client_consent_id,
        "consent": {
            "id": c.id,
            "expires_at": c.ends_at,
            "scope_of_consent": c.scope,
        }
    }))
}

/// `PUT /v1/consent/agreement`.
pub async fn put_agreement(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (caller, org) = org_caller(caller)?;
    if !caller.has_scope(SCOPE_CREATE) {
        return Err(ApiError::forbidden(format!(
            "the token lacks the {SCOPE_CREATE} scope"
        )));
    }
    crate::require_json(&headers)?;
    let b: AgreementBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed JSON: {}",
            gjeldsbro_adapter::scrub(&e.to_string())
        ))
    })?;
    let nin = b
        .nin
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("nin is required"))?;
    let nin = NationalId::parse(nin, app.config.id_policy())
        .map_err(|e| ApiError::bad_request(format!("nin: {e}")))?;
    let scope = b
        .scope_of_consent
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("scope_of_consent is required"))?;
    let consent_scope =
        consent::ConsentScope::parse(scope).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let scope = consent_scope.purpose;
    if !scope.roles().iter().any(|r| caller.has_role(*r)) {
        return Err(ApiError::forbidden(format!(
            "this organisation may not hold {} consents",
            scope.as_str()
        )));
    }
    // Absent means the default, as 0 does: one use within ten minutes.
    let days = b.consent_duration_days.unwrap_or(0);
    if days < 0 {
        return Err(ApiError::bad_request(
            "consent_duration_days must be 0 or more",
        ));
    }
    // Anything above the purpose's maximum is cut to it anyway.
    let requested_days = u32::try_from(days).unwrap_or(u32::MAX);
    let client_consent_id = b
        .client_consent_id
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| ApiError::bad_request("client_consent_id is required"))?;
    if !valid_client_reference(&client_consent_id) {
        return Err(ApiError::bad_request(format!(
            "client_consent_id must be 1 to {MAX_CLIENT_CONSENT_ID} printable characters \
             and may not hold a national id"
        )));
    }
    let req = CreateRequest {
        client_org: org.clone(),
        client_consent_id,
        nin,
        scope,
        kinds: consent_scope.kinds,
        requested_days,
        given_via: GivenVia::Partner,
    };
    let c = consent::create(&*app.lookup.store, &req, OffsetDateTime::now_utc())
        .await
        .map_err(|e| api_error(e, &trace_id))?;
    tracing::info!(trace_id = %trace_id, caller = %org, consent_id = %c.id, scope = %c.scope,
        person = %app.hasher.hash(nin), "consent created or repeated");
    Ok(agreement_answer(&c))
}

/// `GET /v1/debt/{consentId}`: the person's debt under the consent, creditor
/// names shown, `consent: {id, exp, scope}` added.
pub async fn get_debt(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (caller, org) = org_caller(caller)?;
    // Checked before the id is even looked at, so it tells nothing about it.
    if !has_any_consent_scope(&caller) {
        return Err(ApiError::forbidden(
            "the token lacks a consent scope (debt.unsecured.presentation or debt.unsecured.processing)",
        ));
    }
    if !consent::is_consent_id(&id) {
        return Err(ApiError::bad_request("consentId is not a consent id"));
    }
    let c = match consent::owned_by(&*app.lookup.store, &id, &org).await {
        Ok(c) => c,
        Err(e) => {
            let outcome = match e {
                ConsentError::Store(_) => "store_error",
                _ => "not_found",
            };
            count_check(&app, outcome);
            return Err(api_error(e, &trace_id));
        }
    };
    let Ok(consent_scope) = consent::ConsentScope::parse(&c.scope) else {
        tracing::error!(trace_id = %trace_id, consent_id = %c.id, "stored consent has an unknown scope");
        return Err(ApiError::unavailable("the consent cannot be read"));
    };
    let scope = consent_scope.purpose;
    if !caller.has_scope(scope.as_str()) {
        return Err(ApiError::forbidden(format!(
            "the token lacks the {} scope",
            scope.as_str()
        )));
    }
    if !scope.roles().iter().any(|r| caller.has_role(*r)) {
        return Err(ApiError::forbidden(format!(
            "this organisation may not use {} consents",
            scope.as_str()
        )));
    }
    // Step 1: a cheap check before any lender is asked.
    let state = consent::rules::state(&c, OffsetDateTime::now_utc());
    count_check(&app, state.as_str());
    if state != consent::State::Active {
        consent::record_refusal(&app, &c).await;
        tracing::info!(trace_id = %trace_id, caller = %org, consent_id = %c.id, state = state.as_str(),
            status = 403, "consent lookup refused");
        return Err(ApiError::forbidden(state.refusal()));
    }
    let trace = crate::trace::lender_context(&headers, &trace_id);
    let started = std::time::Instant::now();
    // Steps 2 and 3: fan out, then the atomic spend + record that decides.
    match consent::fetch(&app, &c, consent_scope, LOOKUP_WAIT, &trace).await {
        Ok((info, stats)) => {
            let total = started.elapsed();
            app.metrics
                .overhead
                .with_label_values(&["consent"])
                .observe(total.saturating_sub(stats.lender_wait).as_secs_f64());
            tracing::info!(trace_id = %trace_id, purpose = scope.as_str(), caller = %org,
                consent_id = %c.id, person = %app.hasher.hash(c.nin), fan_out = stats.fan_out,
                missing = stats.missing, status = 200,
                lender_wait_ms = stats.lender_wait.as_secs_f64() * 1e3,
                total_ms = total.as_secs_f64() * 1e3, "lookup");
            Ok(crate::json_response(&info))
        }
        Err(ConsentError::Inactive(state)) => {
            // Active at the check, gone at the spend: another use won.
            count_check(&app, "lost_race");
            consent::record_refusal(&app, &c).await;
            tracing::info!(trace_id = %trace_id, caller = %org, consent_id = %c.id, state = state.as_str(),
                status = 403, "consent lookup refused at the spend");
            Err(ApiError::forbidden(state.refusal()))
        }
        Err(ConsentError::Store(e)) => {
            tracing::error!(trace_id = %trace_id, purpose = scope.as_str(), caller = %org, consent_id = %c.id,
                person = %app.hasher.hash(c.nin), error = %e, "lookup failed: disclosure not recorded");
            Err(ApiError::unavailable(
                "the disclosure could not be recorded; nothing was disclosed",
            ))
        }
        Err(e) => Err(api_error(e, &trace_id)),
    }
}

/// Counts one consent check (`gjeldsbro_consent_checks_total{outcome}`).
fn count_check(app: &AppState, outcome: &str) {
    app.metrics
        .consent_checks
        .with_label_values(&[outcome])
        .inc();
}

/// The consent for `status` and `DELETE`: the caller's own, with a consent
/// scope or `consent.create`.
async fn managed_consent(
    app: &AppState,
    caller: Caller,
    id: &str,
    trace_id: &str,
) -> Result<(String, StoredConsent), ApiError> {
    let (caller, org) = org_caller(caller)?;
    if !has_any_consent_scope(&caller) && !caller.has_scope(SCOPE_CREATE) {
        return Err(ApiError::forbidden(
            "the token lacks a consent scope (consent.create, debt.unsecured.presentation or debt.unsecured.processing)",
        ));
    }
    if !consent::is_consent_id(id) {
        return Err(ApiError::bad_request("consentId is not a consent id"));
    }
    let c = consent::owned_by(&*app.lookup.store, id, &org)
        .await
        .map_err(|e| api_error(e, trace_id))?;
    Ok((org, c))
}

/// `GET /v1/debt/{consentId}/status` → `{active, expires_at}`.
pub async fn get_status(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, c) = managed_consent(&app, caller, &id, &trace_id).await?;
    let state = consent::rules::state(&c, OffsetDateTime::now_utc());
    Ok(crate::json_response(&json!({
        "active": state == consent::State::Active,
        "expires_at": c.ends_at,
    })))
}

/// `DELETE /v1/debt/{consentId}` → `204`, also when it was withdrawn before.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (org, c) = managed_consent(&app, caller, &id, &trace_id).await?;
    let at = crate::time::format_fixed(OffsetDateTime::now_utc());
    let archived = app
        .lookup
        .store
        .archive_consent(&c.id, &at, "client")
        .await
        .map_err(|e| api_error(ConsentError::Store(e), &trace_id))?;
    tracing::info!(trace_id = %trace_id, caller = %org, consent_id = %c.id, archived, "consent deleted by client");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_param<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number"))),
    }
}

/// `GET /feed/v1/consent?fromSequenceNr&limit`: the caller's own consent events
/// with `sequenceNr ≥ fromSequenceNr`, oldest first. Consent ids, never national ids.
pub async fn feed(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (caller, org) = org_caller(caller)?;
    if !caller.has_scope(SCOPE_EVENTS) {
        return Err(ApiError::forbidden(format!(
            "the token lacks the {SCOPE_EVENTS} scope"
        )));
    }
    let from: i64 = parse_param(&q, "fromSequenceNr")?.unwrap_or(0);
    if from < 0 {
        return Err(ApiError::bad_request("fromSequenceNr must be 0 or more"));
    }
    let limit: u32 = parse_param::<i64>(&q, "limit")?
        .map(|l| {
            u32::try_from(l)
                .ok()
                .filter(|l| (1..=MAX_FEED_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit must be between 1 and {MAX_FEED_LIMIT}"))
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_FEED_LIMIT);
    let events = app
        .lookup
        .store
        .consent_events(&org, from, limit)
        .await
        .map_err(|e| api_error(ConsentError::Store(e), &trace_id))?;
    let next = events.last().map(|e| e.seq + 1).unwrap_or(from.max(1));
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "sequenceNr": e.seq,
                "type": e.kind,
                "consentId": e.consent_id,
                "timestamp": e.at,
            });
            if let Some(obj) = v.as_object_mut() {
                if let Some(c) = e.client_consent_id {
                    obj.insert("clientConsentId".into(), c.into());
                }
                if let Some(s) = e.scope {
                    obj.insert("scope".into(), s.into());
                }
                if let Some(x) = e.ends_at {
                    obj.insert("expiresAt".into(), x.into());
                }
            }
            v
        })
        .collect();
    Ok(crate::json_response(&json!({
        "events": events,
        "nextSequenceNr": next,
    })))
}
