//! The person's own view, with a person token (`pid`, OIDC style, checked against
//! the JWKS like every token): `GET /v1/me/debt`, `GET /v1/me/consents`,
//! `DELETE /v1/me/consents/{id}`, `GET /v1/me/disclosures`.
//!
//! The person is always the token's `pid`, never a parameter, so nobody can ask
//! about anyone else. The own view writes no disclosure record: the person is
//! not "someone other than the person themself" (DOMAIN.md).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gjeldsbro_adapter::KindSet;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::app::AppState;
use crate::auth::Caller;
use crate::consent::{self, ConsentError};
use crate::disclose::{Ask, Record, disclose};
use crate::error::ApiError;
use crate::lookup::TraceContext;
use crate::model::DebtInformation;
use crate::nin::NationalId;
use crate::redact::Purpose;
use crate::trace::TraceId;

/// Time the lenders get for the own view.
const OWN_VIEW_WAIT: Duration = Duration::from_millis(3_000);
/// The most disclosure records one answer lists (newest first).
const MAX_DISCLOSURES: u32 = 500;

/// The person behind a person token. A token that also names an organisation is
/// an organisation's token and gets no own view: a client could otherwise read a
/// person's debt without a consent and without a disclosure record.
pub(crate) fn person(caller: Caller) -> Result<NationalId, ApiError> {
    // An organisation's client certificate makes the caller an organisation.
    match (caller.person, &caller.org_no) {
        // Counted against the person's quota by the authentication layer.
        (Some(p), None) => Ok(p),
        _ => Err(ApiError::forbidden(
            "this is the person's own view: use a person token",
        )),
    }
}

/// Admits one request of `person` under the per-person quota (`[quota]`), or
/// answers `429` with `Retry-After`, as the per-client quota does. Counted by
/// the keyed hash of the id; the metric's `client` label says `person`.
pub(crate) fn person_quota(app: &AppState, person: NationalId) -> Result<(), ApiError> {
    if let Err(over) = app.person_limits.check(&app.hasher.hash(person)) {
        app.metrics
            .rate_limited
            .with_label_values(&["person"])
            .inc();
        return Err(ApiError::over_quota(over.limit, over.retry_after_secs));
    }
    Ok(())
}

/// What an own-view lookup did, for its log line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OwnStats {
    pub fan_out: usize,
    pub lender_wait: std::time::Duration,
    pub total: std::time::Duration,
}

/// The person's debt of `kinds` at every lender in the index, creditor names
/// shown. No disclosure record.
pub(crate) async fn own_debt(
    app: &AppState,
    nin: NationalId,
    kinds: KindSet,
    trace_id: &str,
) -> (DebtInformation, OwnStats) {
    let trace = TraceContext {
        traceparent: None,
        trace_id: Arc::from(trace_id),
    };
    let started = Instant::now();
    let ask = Ask {
        persons: std::slice::from_ref(&nin),
        kinds,
        purpose: Purpose::OwnView,
        wait: OWN_VIEW_WAIT,
        trace: &trace,
        record: Record::No,
    };
    let disclosed = match disclose(&app.broker, &ask).await {
        Ok(d) => d,
        Err(e) => {
            // Only a commit can fail, and the own view commits nothing.
            tracing::error!(trace_id = %trace_id, error = %e, "own view failed without a record to write");
            return (empty_answer(nin), OwnStats::default());
        }
    };
    let mut stats = OwnStats {
        lender_wait: disclosed.lender_wait,
        ..OwnStats::default()
    };
    let person = disclosed.persons.into_iter().next();
    stats.fan_out = person.as_ref().map_or(0, |p| p.debt.fan_out());
    let info = person.map_or_else(|| empty_answer(nin), |p| p.answer);
    stats.total = started.elapsed();
    app.metrics
        .overhead
        .with_label_values(&["own_view"])
        .observe(stats.total.saturating_sub(stats.lender_wait).as_secs_f64());
    (info, stats)
}

/// The answer for a person no lender was asked about.
fn empty_answer(nin: NationalId) -> DebtInformation {
    DebtInformation {
        ssn: nin,
        loans: Vec::new(),
        number_of_creditors_answered: 0,
        number_of_creditors_missing: 0,
        consent: None,
        co_borrowers: None,
    }
}

fn org_json(app: &AppState, org: &str) -> Value {
    match app.config.client(org) {
        Some(c) => json!({"orgNo": org, "name": c.name}),
        None => json!({"orgNo": org}),
    }
}

/// `GET /v1/me/debt`.
pub async fn debt(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let nin = person(caller)?;
    // The person sees every kind of debt held about them: student loans and
    // collection cases too.
    let (info, stats) = own_debt(&app, nin, KindSet::ALL, &trace_id).await;
    tracing::info!(trace_id = %trace_id, purpose = "own_view", person = %app.hasher.hash(nin),
        fan_out = stats.fan_out, missing = info.number_of_creditors_missing, status = 200,
        lender_wait_ms = stats.lender_wait.as_secs_f64() * 1e3,
        total_ms = stats.total.as_secs_f64() * 1e3, "lookup");
    Ok(crate::json_response(&info))
}

/// `GET /v1/me/consents`: every consent about the person with every use.
pub async fn consents(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let nin = person(caller)?;
    let store = &app.lookup.store;
    let unavailable = |e| super::consent::api_error(ConsentError::Store(e), &trace_id);
    let list = store.consents_of_person(nin).await.map_err(unavailable)?;
    let uses = store
        .consent_uses_of_person(nin)
        .await
        .map_err(unavailable)?;
    let now = OffsetDateTime::now_utc();
    let out: Vec<Value> = list
        .iter()
        .map(|c| {
            let state = consent::rules::state(c, now);
            let uses: Vec<Value> = uses
                .iter()
                .filter(|u| u.consent_id == c.id)
                .map(|u| json!({"at": u.at, "by": org_json(&app, &u.by_org), "outcome": u.outcome}))
                .collect();
            json!({
                "id": c.id,
                "client": org_json(&app, &c.client_org),
                "scope": c.scope,
                "status": state.as_str(),
                "oneTime": c.one_time,
                "givenVia": c.given_via,
                "createdAt": c.created_at,
                "expiresAt": c.ends_at,
                "withdrawnAt": c.archived_at,
                "withdrawnBy": c.archived_by,
                "uses": uses,
            })
        })
        .collect();
    Ok(crate::json_response(&json!({ "consents": out })))
}

/// `DELETE /v1/me/consents/{id}` → `204`. Another person's consent is `404`,
/// as is one that does not exist.
pub async fn withdraw(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let nin = person(caller)?;
    if !consent::is_consent_id(&id) {
        return Err(ApiError::bad_request("not a consent id"));
    }
    let c = match consent::of_person(&*app.lookup.store, &id, nin).await {
        Ok(c) => c,
        Err(ConsentError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "you have no consent with this id",
            ));
        }
        Err(e) => return Err(super::consent::api_error(e, &trace_id)),
    };
    let at = crate::time::format_fixed(OffsetDateTime::now_utc());
    let archived = app
        .lookup
        .store
        .archive_consent(&c.id, &at, "person")
        .await
        .map_err(|e| super::consent::api_error(ConsentError::Store(e), &trace_id))?;
    tracing::info!(trace_id = %trace_id, consent_id = %c.id, archived, "consent withdrawn by the person");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/me/disclosures`: who was told what about the person, and when.
pub async fn disclosures(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let nin = person(caller)?;
    let records = app
        .lookup
        .store
        .disclosures_of_person(nin, MAX_DISCLOSURES)
        .await
        .map_err(|e| super::consent::api_error(ConsentError::Store(e), &trace_id))?;
    let out: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "at": r.at,
                "recipient": org_json(&app, &r.recipient_org),
                "onBehalfOf": r.on_behalf_of.as_deref().map(|o| org_json(&app, o)),
                "purpose": r.purpose,
                "referenceID": r.reference_id,
                "queryId": r.query_id,
                "disclosed": disclosed_for_person(&app, &r.disclosed),
            })
        })
        .collect();
    Ok(crate::json_response(&json!({ "disclosures": out })))
}

/// The record's `{loans: [{lender, loan}], missing}` with lender ids turned into
/// creditor names (the person may see every name).
fn disclosed_for_person(app: &AppState, disclosed: &str) -> Value {
    let Ok(v) = serde_json::from_str::<Value>(disclosed) else {
        return Value::Null;
    };
    let loans: Vec<Value> = v["loans"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    let name = l["lender"]
                        .as_str()
                        .and_then(|id| app.config.lender(id))
                        .map(|c| c.name.clone());
                    json!({"creditorName": name, "loan": l["loan"]})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"loans": loans, "numberOfcreditorsMissing": v["missing"]})
}
