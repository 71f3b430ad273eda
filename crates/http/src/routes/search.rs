//! `POST /api/rest/v2/debt/search`: authenticate, check role and scope, validate
//! the body, run the search, answer `200`, `204` or the error JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::model::SearchRequest;
use crate::nin::NationalId;
use crate::search::{SearchOutcome, SearchQuery, search};
use crate::trace::TraceId;

pub const SCOPE_SEARCH: &str = "debt.search";
const DEFAULT_WAIT_MS: i64 = 3_000;
const MIN_WAIT_MS: i64 = 1_000;
const MAX_WAIT_MS: i64 = 60_000;
const MAX_REFERENCE_LEN: usize = 100;
const MAX_MESSAGE_LEN: usize = 100;
const MAX_CO_BORROWERS: usize = 10;

pub async fn handler(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (caller, org_no) = crate::authorize_org(
        caller,
        &[Role::FinancialInstitution, Role::CreditBureau],
        SCOPE_SEARCH,
        "search is for financial institutions and credit bureaus",
    )?;
    // A bureau that is also a financial institution asks as the institution.
    let via_bureau = !caller.has_role(Role::FinancialInstitution);
    crate::require_json(&headers)?;
    let request: SearchRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed JSON: {}",
            gjeldsbro_adapter::scrub(&e.to_string())
        ))
    })?;
    let query = validate(&app, &caller, org_no, via_bureau, request)?;

    let trace = crate::trace::lender_context(&headers, &trace_id);
    let started = std::time::Instant::now();
    let result = search(&app, &query, &trace).await;
    let total = started.elapsed();
    let (outcome, stats) = match result {
        Ok(ok) => ok,
        Err(e) => {
            tracing::error!(trace_id = %trace_id, purpose = "search", caller = %query.recipient_org,
                person = %app.hasher.hash(query.person), error = %e, "lookup failed: disclosure not recorded");
            return Err(ApiError::unavailable(
                "the disclosure could not be recorded; nothing was disclosed",
            ));
        }
    };
    let status = match &outcome {
        SearchOutcome::NoDebt => 204,
        SearchOutcome::Answer(_) => 200,
    };
    // Broker overhead: what the lookup cost beyond waiting on lenders (merge,
    // redaction, the disclosure commit). Its p99 is the broker's own target.
    app.metrics
        .overhead
        .with_label_values(&["search"])
        .observe(total.saturating_sub(stats.lender_wait).as_secs_f64());
    tracing::info!(
        trace_id = %trace_id,
        purpose = "search",
        caller = %query.recipient_org,
        on_behalf_of = query.on_behalf_of.as_deref().unwrap_or(""),
        person = %app.hasher.hash(query.person),
        co_borrowers = query.co_borrowers.len(),
        fan_out = stats.fan_out,
        live = stats.live,
        snapshot = stats.snapshot,
        missing = stats.missing,
        status,
        lender_wait_ms = stats.lender_wait.as_secs_f64() * 1e3,
        total_ms = total.as_secs_f64() * 1e3,
        "lookup"
    );
    Ok(match outcome {
        SearchOutcome::NoDebt => StatusCode::NO_CONTENT.into_response(),
        SearchOutcome::Answer(info) => crate::json_response(&*info),
    })
}

fn parse_nin(app: &AppState, field: &str, value: Option<&str>) -> Result<NationalId, ApiError> {
    let value = value.ok_or_else(|| ApiError::bad_request(format!("{field} is required")))?;
    NationalId::parse(value, app.config.id_policy())
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn validate(
    app: &AppState,
    caller: &Caller,
    org_no: String,
    via_bureau: bool,
    r: SearchRequest,
) -> Result<SearchQuery, ApiError> {
    let person = parse_nin(app, "ssn", r.ssn.as_deref())?;
    let reference_id = r
        .reference_id
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("referenceID is required"))?;
    if reference_id.chars().count() > MAX_REFERENCE_LEN {
        return Err(ApiError::bad_request(format!(
            "referenceID is longer than {MAX_REFERENCE_LEN} characters"
        )));
    }
    let message_to_customer = r.message_to_customer.filter(|m| !m.trim().is_empty());
    if message_to_customer
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "messageToCustomer is longer than {MAX_MESSAGE_LEN} characters"
        )));
    }
    let wait = r.max_time_to_wait.unwrap_or(DEFAULT_WAIT_MS);
    if !(MIN_WAIT_MS..=MAX_WAIT_MS).contains(&wait) {
        return Err(ApiError::bad_request(
            "maxTimeToWait must be between 1000 and 60000 ms",
        ));
    }
    let refs = r.co_borrowers.unwrap_or_default();
    if refs.len() > MAX_CO_BORROWERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CO_BORROWERS} coBorrowers"
        )));
    }
    let mut co_borrowers = Vec::with_capacity(refs.len());
    for (i, c) in refs.iter().enumerate() {
        let nin = parse_nin(app, &format!("coBorrowers[{i}].ssn"), c.ssn.as_deref())?;
        if nin == person || co_borrowers.contains(&nin) {
            return Err(ApiError::bad_request(format!(
                "coBorrowers[{i}] repeats a person already asked for"
            )));
        }
        co_borrowers.push(nin);
    }
    let on_behalf_of = r
        .on_behalf_of_organization
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(org) = &on_behalf_of
        && !crate::config::is_org_no(org)
    {
        return Err(ApiError::bad_request(
            "onBehalfOfOrganization must be a 9-digit organisation number",
        ));
    }
    if via_bureau {
        let Some(org) = &on_behalf_of else {
            return Err(ApiError::bad_request(
                "onBehalfOfOrganization is required for credit bureaus",
            ));
        };
        let known_fi = app
            .config
            .client(org)
            .is_some_and(|c| c.roles.contains(&Role::FinancialInstitution));
        if !known_fi {
            return Err(ApiError::forbidden(
                "onBehalfOfOrganization is not a known financial institution",
            ));
        }
    } else if on_behalf_of
        .as_ref()
        .is_some_and(|o| Some(o) != caller.org_no.as_ref())
    {
        return Err(ApiError::forbidden(
            "only credit bureaus may ask on behalf of another organisation",
        ));
    }
    Ok(SearchQuery {
        person,
        co_borrowers,
        reference_id,
        message_to_customer,
        max_time_to_wait: Duration::from_millis(wait as u64),
        recipient_org: org_no,
        on_behalf_of: if via_bureau { on_behalf_of } else { None },
        using_own_notification: r.using_own_notification.unwrap_or(false),
        via_bureau,
    })
}

/// The `Content-Type` a JSON body must carry (absent is tolerated, as the
/// registry's existing clients sometimes omit it).
pub fn json_content_type_ok(headers: &HeaderMap) -> bool {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(v) => v
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json"),
    }
}
