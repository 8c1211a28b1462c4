//! `GET /api/v1/footprint`: energy, use and manufacture emissions for the
//! fleet, by group, by host and over time, with the coefficients used.

use super::params::TimeMs;
use super::{ApiError, AppState, blocking};
use crate::footprint::compute::{DAY_MS, HOUR_MS};
use crate::footprint::{FootprintConfig, GridIntensity, Window};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// The coefficients, loaded and checked once at start-up.
#[derive(Debug)]
pub struct Settings {
    pub cfg: FootprintConfig,
    pub grid: GridIntensity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FootprintQuery {
    /// Milliseconds since 1970; default: 24 h before `to`. Rounded down to
    /// the hour.
    from: Option<TimeMs>,
    /// Milliseconds since 1970; default: now. Rounded up to the hour.
    to: Option<TimeMs>,
    /// Time series step: "hour", "day" or "none"; default: hour for up to
    /// two days, day beyond.
    step: Option<String>,
    /// Only this agent id.
    host: Option<String>,
    /// Only hosts of this group label.
    group: Option<String>,
}

const MAX_SPAN_MS: i64 = 400 * DAY_MS;
/// Footprint computations at once: each may read a year of a fleet.
const HEAVY_AT_ONCE: usize = 2;
static HEAVY: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HEAVY_AT_ONCE);

/// The window a raw query string asks for, as the endpoint reads it (the
/// `http_query` fuzz target drives this).
pub fn window_from_query(query: &str, now_ms: i64) -> Result<Window, String> {
    let uri: axum::http::Uri = format!("/api/v1/footprint?{query}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let Query(q) = Query::<FootprintQuery>::try_from_uri(&uri).map_err(|e| e.body_text())?;
    window(q.from, q.to, q.step.as_deref(), now_ms)
}

/// The window a query asks for: whole hours, at most 400 days, and a step
/// that keeps the series to at most 1,488 buckets.
pub(crate) fn window(
    from: Option<TimeMs>,
    to: Option<TimeMs>,
    step: Option<&str>,
    now: i64,
) -> Result<Window, String> {
    let to = to.unwrap_or(TimeMs::clamped(now)).get();
    // Both are in 0..=MAX_TIME_MS (params.rs): no sum below can wrap.
    let from = from.map(TimeMs::get).unwrap_or((to - DAY_MS).max(0));
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    // Energy is rolled up by hour: the period is widened to whole hours
    // (and says so in from_ms/to_ms) rather than guessing where within an
    // hour the energy was drawn.
    let from = from.div_euclid(HOUR_MS) * HOUR_MS;
    let to = (to + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    let span = to - from;
    if span > MAX_SPAN_MS {
        return Err("the period is limited to 400 days; ask in pieces".into());
    }
    let step_ms = match step {
        Some("hour") if span > 62 * DAY_MS => {
            return Err("step=hour is limited to 62 days; use step=day".into());
        }
        Some("hour") => Some(HOUR_MS),
        Some("day") => Some(DAY_MS),
        Some("none") => None,
        None if span <= 2 * DAY_MS => Some(HOUR_MS),
        None => Some(DAY_MS),
        Some(other) => return Err(format!("step={other:?}: use hour, day or none")),
    };
    Ok(Window {
        from_ms: from,
        to_ms: to,
        step_ms,
        now_ms: now,
    })
}

pub(crate) async fn footprint(
    State(s): State<AppState>,
    q: Result<Query<FootprintQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let Query(q) = q.map_err(|e| {
        bad(format!(
            "{}; use ?from=<ms>&to=<ms>&step=hour|day|none&group=<label>&host=<agent id>",
            e.body_text()
        ))
    })?;
    let now = crate::ingest::now_ms();
    let w = window(q.from, q.to, q.step.as_deref(), now).map_err(bad)?;
    let reader = s.reader.clone();
    let settings = s.footprint.clone();
    let (host, group) = (q.host.clone(), q.group.clone());
    // The rows are streamed and the work is bounded by the window (at most
    // 400 days, 1,488 hourly steps) times the hosts; at most
    // HEAVY_AT_ONCE such reads run at a time, on the blocking pool.
    let _permit = HEAVY
        .acquire()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let report = blocking(move || {
        reader.footprint(
            host.as_deref(),
            group.as_deref(),
            &settings.cfg,
            &settings.grid,
            w,
        )
    })
    .await?;
    // One entry per host the query selected.
    if let Some(h) = &q.host
        && report.hosts.is_empty()
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no agent with id {h:?}; GET /api/v1/agents lists the known ones"),
        ));
    }
    let settings = &s.footprint;
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body["coefficients"] = coefficients(settings);
    body["notes"] = json!([
        "use_kg counts electricity only (location-based, grid average or the configured hourly table); embodied_kg spreads manufacture evenly over each device's lifetime",
        "measured_share is the part of the energy measured by RAPL or a battery; the rest is modelled (METHODOLOGY.md), typically within ±30 % of a wall meter",
        "coverage below 1 means hosts were off or not reporting part of the period: their energy then is not counted",
        "network equipment, printers, shared storage and cloud services are not included"
    ]);
    Ok(Json(body))
}

fn coefficients(s: &Settings) -> serde_json::Value {
    json!({
        "grid_g_per_kwh": s.cfg.grid_g_per_kwh,
        "grid_source": if s.cfg.grid_g_per_kwh == 56.0 {
            "France, yearly average (RTE éCO2mix, as used by CodeCarbon); Boavizta uses 98 (life-cycle)"
        } else {
            "configured"
        },
        "grid_hourly": s.grid.is_hourly(),
        "pue_by_group": s.cfg.pue,
        "pue_server": s.cfg.pue_server,
        "pue_default": s.cfg.pue_default,
        "embodied": s.cfg.embodied,
        "embodied_source": "ADEME Base Impacts via Boavizta (laptop, desktop, monitor); server: generic server, 5-year life assumed",
    })
}
