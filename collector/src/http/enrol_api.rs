//! Agent enrolment over HTTP (admin only): issue a token (for one agent
//! id, or for a group that many agents may use during a window), list
//! tokens and who used them, revoke a token or an agent's credential. The
//! agent trades the token for its key over gRPC (`Telemetry/Enrol`).

use super::{ApiError, AppState};
use crate::ingest::credentials::{Credentials, EnrolError};
use crate::ingest::enrol_tokens::{self, Spec, TokenInfo};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

impl From<EnrolError> for ApiError {
    fn from(e: EnrolError) -> Self {
        let status = match &e {
            EnrolError::Taken(_) => StatusCode::CONFLICT,
            EnrolError::Unknown(_) | EnrolError::UnknownToken(_) => StatusCode::NOT_FOUND,
            EnrolError::Random(_) | EnrolError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
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
    /// A group or site label for a roll-out token (with `uses`).
    group: Option<String>,
    /// How many agents may enrol with it (default 1, at most 100000).
    uses: Option<u32>,
    /// How long it stays valid, e.g. "7d", "12h" (default:
    /// security.enrol_token_ttl_hours; at most 90 days).
    expires: Option<String>,
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

/// `POST /api/v1/enrolments` `{"agent_id": "ws-042"}` or `{"group": "dsi",
/// "uses": 500, "expires": "7d"}` → the token, shown once.
pub(crate) async fn issue(
    State(s): State<AppState>,
    body: Result<Json<IssueBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use axum::extract::rejection::JsonRejection;
    let body = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => IssueBody::default(),
        Err(e) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; send {{\"agent_id\": \"ws-042\"}} or {{\"group\": \"dsi\", \"uses\": 500, \"expires\": \"7d\"}}",
                    e.body_text()
                ),
            ));
        }
    };
    let ttl_ms = match &body.expires {
        Some(e) => sobre_base::duration::parse(e)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .map_err(|m| ApiError(StatusCode::BAD_REQUEST, format!("expires: {m}")))?,
        None => s.security.enrol_token_ttl_hours.saturating_mul(3_600_000),
    };
    let spec = Spec {
        agent_id: body.agent_id.clone(),
        group: body.group.clone(),
        uses: body.uses.unwrap_or(1),
        ttl_ms,
    };
    let now = crate::ingest::now_ms();
    let (token, id) = run(&s, move |c, _| enrol_tokens::issue(c, &spec, now)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "id": id,
            "agent_id": body.agent_id,
            "group": body.group,
            "uses_max": body.uses.unwrap_or(1),
            "expires_at_ms": now + ttl_ms,
            "use": "put it in the agents' config as [enrol] token = \"...\"; each agent gets its own key",
        })),
    ))
}

/// `GET /api/v1/enrolments`: the latest tokens (never the tokens
/// themselves), newest first.
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(run(&s, |c, _| enrol_tokens::list(c, 1000)).await?))
}

/// `GET /api/v1/enrolments/{id}`: one token and who used it.
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (token, used) = run(&s, move |c, _| enrol_tokens::uses(c, &id)).await?;
    Ok(Json(json!({ "token": token, "used_by": used })))
}

/// `DELETE /api/v1/enrolments/{id}`: no further use; agents it enrolled
/// keep their keys.
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = crate::ingest::now_ms();
    let key = id.clone();
    run(&s, move |c, _| enrol_tokens::revoke(c, &key, now)).await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
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
