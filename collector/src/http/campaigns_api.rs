//! Clean Up Day campaigns over HTTP: create, list, start, end, archive,
//! and the report as JSON, CSV or a printable page. (Writes need the admin
//! role once issue "Security and trust" lands; until then keep the API on
//! a trusted address.)

use super::{ApiError, AppState};
use crate::campaign::report::{Report, csv};
use crate::campaign::{Campaign, CampaignError, NewCampaign, State as Lifecycle, html};
use crate::store::campaigns as db;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        let status = match &e {
            CampaignError::Invalid(_) => StatusCode::BAD_REQUEST,
            CampaignError::NotFound(_) => StatusCode::NOT_FOUND,
            CampaignError::Exists(_) | CampaignError::BadTransition { .. } => StatusCode::CONFLICT,
            CampaignError::Store(_) => {
                tracing::error!(error = %e, "campaign store access failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

async fn run<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&crate::jobs::Jobs) -> Result<T, CampaignError> + Send + 'static,
) -> Result<T, ApiError> {
    let jobs = s.jobs.clone();
    Ok(tokio::task::spawn_blocking(move || f(&jobs))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??)
}

pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<Vec<Campaign>>, ApiError> {
    Ok(Json(
        run(&s, |j| j.with_campaigns(|c| Ok(db::list(c)?))).await?,
    ))
}

pub(crate) async fn create(
    State(s): State<AppState>,
    body: Result<Json<NewCampaign>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let Json(new) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; send JSON {{\"id\", \"name\", \"starts_at_ms\", \"ends_at_ms\", \
                 \"scope\": {{\"groups\", \"sites\", \"hosts\"}}, \"factor\", \"rescan_interval_s\"}}",
                e.body_text()
            ),
        )
    })?;
    let now = crate::ingest::now_ms();
    let c = run(&s, move |j| j.with_campaigns(|c| db::create(c, &new, now))).await?;
    // A campaign starting within a day has nudges to queue.
    s.jobs.routes.online.notify_one();
    Ok((StatusCode::CREATED, Json(c)))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    Ok(Json(
        run(&s, move |j| j.with_campaigns(|c| db::get(c, &id))).await?,
    ))
}

async fn transition(s: &AppState, id: String, to: Lifecycle) -> Result<Json<Campaign>, ApiError> {
    let now = crate::ingest::now_ms();
    let c = run(s, move |j| {
        j.with_campaigns(|c| db::transition(c, &id, to, now))
    })
    .await?;
    // Commands leave on the next dispatch pass: make it now.
    s.jobs.routes.online.notify_one();
    Ok(Json(c))
}

pub(crate) async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    transition(&s, id, Lifecycle::Running).await
}

pub(crate) async fn end(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    transition(&s, id, Lifecycle::Ended).await
}

pub(crate) async fn archive(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    transition(&s, id, Lifecycle::Archived).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// "fr" or "en" (the page only); default: the nudges' language.
    lang: Option<String>,
}

async fn report(s: &AppState, id: String) -> Result<Report, ApiError> {
    let now = crate::ingest::now_ms();
    run(s, move |j| j.campaign_report(&id, now)).await
}

/// `GET /api/v1/campaigns/{id}/report`, `.../report.csv`, `.../report.html`.
pub(crate) async fn report_any(
    State(s): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{}; use ?lang=fr or ?lang=en", e.body_text()),
        )
    })?;
    let lang = q.lang.unwrap_or_else(|| s.jobs.nudge.lang.clone());
    if lang != "fr" && lang != "en" {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("lang={lang:?}: use fr or en"),
        ));
    }
    match file.as_str() {
        "report" | "report.json" => Ok(Json(report(&s, id).await?).into_response()),
        "report.csv" => {
            let r = report(&s, id).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{}.csv\"", r.campaign.id),
                    ),
                ],
                csv(&r),
            )
                .into_response())
        }
        "report.html" => Ok(Html(html::render(&report(&s, id).await?, &lang)).into_response()),
        other => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no {other:?} for a campaign: use report, report.csv or report.html"),
        )),
    }
}
