//! Agent enrolment over HTTP (admin only): issue a one-time token, revoke
//! an agent's credential. The agent trades the token for its key over
//! gRPC (`Telemetry/Enrol`).

use super::{ApiError, AppState};
use crate::ingest::credentials::{Credentials, EnrolError};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

impl From<EnrolError> for ApiError {
    fn from(e: EnrolError) -> Self {
        let status = match &e {
            EnrolError::AgentId(_) | EnrolError::Token => StatusCode::BAD_REQUEST,
            EnrolError::Taken(_) => StatusCode::CONFLICT,
            EnrolError::Unknown(_) => StatusCode::NOT_FOUND,
            EnrolError::Random(_) | EnrolError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueBody {
    /// Bind the token to this agent id (and then it may replace that
    /// agent's key: a re-enrolment); none: any id that has no credential
    /// yet may use it once.
    agent_id: Option<String>,
}

async fn run<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&dyn crate::db::Db, &Credentials) -> Result<T, EnrolError> + Send + 'static,
) -> Result<T, ApiError> {
    let (jobs, creds) = (s.jobs.clone(), s.credentials.clone());
    let r = tokio::task::spawn_blocking(move || {
        jobs.with_conn(|c| Ok(f(c, &creds)))
            .map_err(EnrolError::from)?
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(r?)
}

/// `POST /api/v1/enrolments` `{"agent_id": "ws-042"}` → the token, once.
pub(crate) async fn issue(
    State(s): State<AppState>,
    body: Option<Json<IssueBody>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let ttl_ms = s.security.enrol_token_ttl_hours * 3_600_000;
    let now = crate::ingest::now_ms();
    let agent = body.agent_id.clone();
    let token = run(&s, move |c, _| {
        Credentials::issue(c, agent.as_deref(), ttl_ms, now)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "agent_id": body.agent_id,
            "expires_at_ms": now + ttl_ms,
            "use": "put it in the agent's config as [enrol] token = \"...\"; it works once",
        })),
    ))
}

/// `DELETE /api/v1/agents/{id}/credential`: the agent's envelopes are
/// refused from now on.
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = crate::ingest::now_ms();
    let key = id.clone();
    run(&s, move |c, creds| creds.revoke(c, &key, now)).await?;
    Ok(Json(json!({ "agent_id": id, "revoked": true })))
}
