//! The HTTP API: `/health`, `/metrics` and the `/api/v1/...` JSON
//! endpoints over the store; the web console's pages (`console/`).

pub mod auth;
pub mod campaigns_api;
pub mod enrol_api;
pub mod findings_api;
pub mod footprint_api;
pub mod origin;
pub mod params;
pub mod serve;

use crate::console;
use crate::metrics::Metrics;
use crate::store::{Reader, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub reader: Reader,
    pub metrics: Arc<Metrics>,
    pub footprint: Arc<footprint_api::Settings>,
    pub jobs: Arc<crate::jobs::Jobs>,
    pub tokens: Arc<auth::Tokens>,
    pub credentials: Arc<crate::ingest::credentials::Credentials>,
    pub security: crate::config::SecurityConfig,
    /// Served over HTTPS: cookies are marked `Secure`.
    pub https: bool,
    pub hosts: origin::AllowedHosts,
}

pub fn router(state: AppState) -> Router {
    let guard = auth::AuthState {
        tokens: state.tokens.clone(),
        metrics: state.metrics.clone(),
    };
    Router::new()
        .route("/", get(console::overview::page))
        .route("/api", get(index))
        .route("/machines/{id}", get(console::machine::page))
        .route("/findings", get(console::findings::page))
        .route(
            "/login",
            get(console::login::page).post(console::login::submit),
        )
        .route("/logout", axum::routing::post(console::login::logout))
        .route(
            "/findings/{id}/acknowledge",
            axum::routing::post(console::findings::acknowledge),
        )
        .route(
            "/findings/{id}/snooze",
            axum::routing::post(console::findings::snooze),
        )
        .route(
            "/campaigns",
            get(console::campaigns::page).post(console::campaigns::create),
        )
        .route(
            "/campaigns/{id}/start",
            axum::routing::post(console::campaigns::start),
        )
        .route(
            "/campaigns/{id}/end",
            axum::routing::post(console::campaigns::end),
        )
        .route(
            "/campaigns/{id}/archive",
            axum::routing::post(console::campaigns::archive),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/agents/{id}", get(agent))
        .route("/api/v1/agents/{id}/samples", get(samples))
        .route("/api/v1/footprint", get(footprint_api::footprint))
        .route("/api/v1/agents/{id}/storage", get(agent_storage))
        .route("/api/v1/storage", get(fleet_storage))
        .route("/api/v1/findings", get(findings_api::list))
        .route(
            "/api/v1/findings/{id}/acknowledge",
            axum::routing::post(findings_api::acknowledge),
        )
        .route(
            "/api/v1/findings/{id}/snooze",
            axum::routing::post(findings_api::snooze),
        )
        .route(
            "/api/v1/detect",
            axum::routing::post(findings_api::run_pass),
        )
        .route("/api/v1/agents/{id}/nudges", get(findings_api::nudges))
        .route(
            "/api/v1/agents/{id}/nudge-optout/{kind}",
            axum::routing::put(findings_api::opt_out).delete(findings_api::opt_in),
        )
        .route(
            "/api/v1/campaigns",
            get(campaigns_api::list).post(campaigns_api::create),
        )
        .route("/api/v1/campaigns/{id}", get(campaigns_api::get))
        .route(
            "/api/v1/campaigns/{id}/start",
            axum::routing::post(campaigns_api::start),
        )
        .route(
            "/api/v1/campaigns/{id}/end",
            axum::routing::post(campaigns_api::end),
        )
        .route(
            "/api/v1/campaigns/{id}/archive",
            axum::routing::post(campaigns_api::archive),
        )
        .route(
            "/api/v1/campaigns/{id}/{file}",
            get(campaigns_api::report_any),
        )
        .route(
            "/api/v1/enrolments",
            get(enrol_api::list).post(enrol_api::issue),
        )
        .route(
            "/api/v1/enrolments/{id}",
            get(enrol_api::get).delete(enrol_api::revoke_token),
        )
        .route(
            "/api/v1/agents/{id}/credential",
            axum::routing::delete(enrol_api::revoke),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
        .layer(axum::middleware::from_fn_with_state(
            state.hosts.clone(),
            origin::host_guard,
        ))
        .with_state(state)
}

/// An API error: a status and a JSON body `{"error": "..."}` that says
/// what was wrong.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store read failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn agents(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let reader = s.reader.clone();
    Ok(Json(blocking(move || reader.agents()).await?))
}

async fn agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let reader = s.reader.clone();
    let key = id.clone();
    match blocking(move || reader.agent(&key)).await? {
        Some(a) => Ok(Json(a)),
        None => Err(unknown_agent(&id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesQuery {
    /// Milliseconds since the Unix epoch; default: one hour ago.
    since: Option<params::TimeMs>,
    /// At most this many samples (default 1000, at most 10000).
    limit: Option<params::Bounded<1, 10_000>>,
}

async fn samples(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<SamplesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; use ?since=<milliseconds since 1970>&limit=<1..10000>",
                e.body_text()
            ),
        )
    })?;
    let since = q.since.map_or_else(
        || crate::ingest::now_ms().saturating_sub(3_600_000),
        params::TimeMs::get,
    );
    let limit = q.limit.map_or(1000, |l| l.count() as u32);
    let reader = s.reader.clone();
    let key = id.clone();
    match blocking(move || reader.samples(&key, since, limit)).await? {
        Some(rows) => Ok(Json(rows)),
        None => Err(unknown_agent(&id)),
    }
}

/// The latest storage scan summary of one agent.
async fn agent_storage(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reader = s.reader.clone();
    let key = id.clone();
    match blocking(move || reader.storage(&key)).await? {
        Some(Some(v)) => Ok(Json(v)),
        Some(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "agent {id:?} has not sent a storage summary yet; its scans are set in the agent's [storage] config"
            ),
        )),
        None => Err(unknown_agent(&id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageQuery {
    /// Only hosts of this group label.
    group: Option<String>,
    /// How many redundant contents to list (default 50, at most 1000).
    top: Option<params::Bounded<1, 1000>>,
}

/// The fleet's storage: categories, age, groups, content on several hosts.
async fn fleet_storage(
    State(s): State<AppState>,
    q: Result<Query<StorageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::storage::FleetStorage>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{}; use ?group=<label>&top=<1..1000>", e.body_text()),
        )
    })?;
    let reader = s.reader.clone();
    let group = q.group.clone();
    let top = q.top.map_or(50, params::Bounded::count);
    // Grouping every host's fingerprints is CPU work: on the blocking
    // pool with the read, never on an async worker.
    Ok(Json(
        blocking(move || {
            let hosts = reader.storage_fleet(group.as_deref())?;
            Ok(crate::storage::fleet(&hosts, top))
        })
        .await?,
    ))
}

pub(crate) fn unknown_agent(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no agent with id {id:?}; GET /api/v1/agents lists the known ones"),
    )
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api for the list".into(),
    )
}
