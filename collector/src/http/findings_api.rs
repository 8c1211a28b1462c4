//! Findings and nudges over HTTP: list findings with filters, acknowledge
//! or snooze one, run a detection pass now, see a host's nudges and opt it
//! out of a kind. (Writes need the admin role once issue "Security and
//! trust" lands; until then keep the API on a trusted address.)

use super::{ApiError, AppState};
use crate::detect::{DAY_MS, Kind};
use crate::store::findings::{self, FindingFilter};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

async fn with_jobs<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&crate::jobs::Jobs) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let jobs = s.jobs.clone();
    tokio::task::spawn_blocking(move || f(&jobs))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    host: Option<String>,
}

const STATES: [&str; 4] = ["open", "acknowledged", "snoozed", "resolved"];

pub(crate) async fn list(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<findings::StoredFinding>>, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let Query(q) = q.map_err(|e| bad(format!("{}; use ?kind=&state=&host=", e.body_text())))?;
    if let Some(k) = &q.kind
        && Kind::parse(k).is_none()
    {
        let kinds: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(bad(format!("kind={k:?}: one of {}", kinds.join(", "))));
    }
    if let Some(st) = &q.state
        && !STATES.contains(&st.as_str())
    {
        return Err(bad(format!("state={st:?}: one of {}", STATES.join(", "))));
    }
    let filter = FindingFilter {
        kind: q.kind,
        state: q.state,
        agent_id: q.host,
    };
    Ok(Json(
        with_jobs(&s, move |j| j.with_conn(|c| findings::list(c, &filter))).await?,
    ))
}

pub(crate) async fn acknowledge(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = id.clone();
    let ok = with_jobs(&s, move |j| {
        j.with_conn(|c| findings::set_state(c, &key, "acknowledged", None))
    })
    .await?;
    state_changed(ok, &id, "acknowledged")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnoozeQuery {
    /// Days to snooze (default 7, at most 365).
    days: Option<super::params::Bounded<1, 365>>,
}

pub(crate) async fn snooze(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<SnoozeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{}; use ?days=1..365", e.body_text()),
        )
    })?;
    let days = q.days.map_or(7, super::params::Bounded::get);
    let until = crate::ingest::now_ms() + days * DAY_MS;
    let key = id.clone();
    let ok = with_jobs(&s, move |j| {
        j.with_conn(|c| findings::set_state(c, &key, "snoozed", Some(until)))
    })
    .await?;
    state_changed(ok, &id, "snoozed")
}

fn state_changed(ok: bool, id: &str, state: &str) -> Result<Json<serde_json::Value>, ApiError> {
    if ok {
        Ok(Json(json!({"id": id, "state": state})))
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no open finding with id {id:?}; GET /api/v1/findings lists them"),
        ))
    }
}

/// Runs a detection pass now and says what it did.
pub(crate) async fn run_pass(
    State(s): State<AppState>,
) -> Result<Json<crate::jobs::PassReport>, ApiError> {
    Ok(Json(
        with_jobs(&s, |j| j.pass(crate::ingest::now_ms())).await?,
    ))
}

pub(crate) async fn nudges(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<findings::StoredNudge>>, ApiError> {
    let key = id.clone();
    Ok(Json(
        with_jobs(&s, move |j| j.with_conn(|c| findings::nudges_of(c, &key))).await?,
    ))
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind == "*" || kind == "campaign" || Kind::parse(kind).is_some() {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown kind {kind:?}; use a finding kind, campaign, or * for all"),
        ))
    }
}

pub(crate) async fn opt_out(
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_kind(&kind)?;
    let (a, k) = (id.clone(), kind.clone());
    with_jobs(&s, move |j| {
        j.with_conn(|c| findings::set_optout(c, &a, &k, true))
    })
    .await?;
    Ok(Json(json!({"agent": id, "kind": kind, "nudges": "off"})))
}

pub(crate) async fn opt_in(
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_kind(&kind)?;
    let (a, k) = (id.clone(), kind.clone());
    with_jobs(&s, move |j| {
        j.with_conn(|c| findings::set_optout(c, &a, &k, false))
    })
    .await?;
    Ok(Json(json!({"agent": id, "kind": kind, "nudges": "on"})))
}
