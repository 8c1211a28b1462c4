//! `/findings`: what the detectors found, filtered by kind, state and host
//! (a GET form), each with the evidence behind it; acknowledge and snooze
//! as plain HTML forms that call the same store function as the API.

use super::access::Admin;
use super::fmt::{bytes, count, date, dec, esc, kg, kwh, urlenc};
use super::layout::{self, Ctx, Nav};
use super::{ConsoleError, PageError, PageResult, blocking, form, see_other};
use crate::detect::{DAY_MS, Kind};
use crate::http::AppState;
use crate::store::findings::{self as db, FindingFilter, StoredFinding};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// At most this many findings on one page (about 1.5 kB each: the page
/// stays under 100 kB); filter for the others.
const MAX_LISTED: usize = 40;
const STATES: [&str; 4] = ["open", "acknowledged", "snoozed", "resolved"];

/// What people call each kind of finding.
pub fn kind_label(kind: &str, fr: bool) -> String {
    let (f, e) = match kind {
        "idle_server" => ("Serveur inactif", "Idle server"),
        "left_on" => ("Poste allumé pour rien", "Machine left on"),
        "consolidation" => ("Serveurs à regrouper", "Servers to consolidate"),
        "redundant" => (
            "Contenu en plusieurs copies",
            "Content copied on several hosts",
        ),
        "bloat" => ("Stockage à libérer", "Storage to free"),
        "past_lifetime" => (
            "Appareil à garder (durée de vie dépassée)",
            "Device to keep (past its lifetime)",
        ),
        "battery_worn" => ("Batterie usée", "Worn battery"),
        other => return esc(other),
    };
    (if fr { f } else { e }).to_owned()
}

fn state_label(state: &str, fr: bool) -> &str {
    match (state, fr) {
        ("open", true) => "ouvert",
        ("acknowledged", true) => "pris en compte",
        ("snoozed", true) => "en veille",
        ("resolved", true) => "résolu",
        (s, _) => s,
    }
}

/// One evidence value, in units people read: bytes for `*_bytes`, dates
/// for `*_ms`, lists of objects one per line.
fn evidence_value(key: &str, v: &Value, fr: bool) -> String {
    match v {
        Value::Number(n) if key.ends_with("_ms") => n.as_i64().map_or_else(|| n.to_string(), date),
        Value::Number(n) if key.ends_with("bytes") => {
            n.as_u64().map_or_else(|| n.to_string(), |b| bytes(b, fr))
        }
        Value::Number(n) if key == "health" => n
            .as_f64()
            .map_or_else(|| n.to_string(), |h| super::fmt::pct(h, fr)),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => count(u, fr),
            (None, Some(f)) => dec(f, fr),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "✓" } else { "✗" }.into(),
        Value::Null => "—".into(),
        Value::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .take(10)
                .map(|x| evidence_value(key, x, fr))
                .collect();
            let more = items.len().saturating_sub(10);
            shown.join(" ; ")
                + &if more > 0 {
                    format!(" (+{more})")
                } else {
                    String::new()
                }
        }
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| format!("{k}: {}", evidence_value(k, x, fr)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// One finding: what, where, its state, what acting on it saves, the
/// evidence, and the forms to acknowledge or snooze it. `host` is the
/// machine's name when the page should link to it.
pub fn card(ctx: &Ctx, f: &StoredFinding, host: Option<&str>) -> String {
    let fr = ctx.fr;
    let subject = match (&f.agent_id, host) {
        (Some(id), Some(name)) => format!(
            "<a href=\"{}\">{}</a>",
            esc(&ctx.href(&format!("/machines/{}", urlenc(id)))),
            esc(name)
        ),
        _ => esc(&f.subject),
    };
    let mut savings = Vec::new();
    if let Some(e) = f.saving_kwh_year.filter(|e| *e > 0.0) {
        savings.push(format!("{} / {}", kwh(e, fr), ctx.t("an", "year")));
    }
    if let Some(c) = f.saving_kg_year.filter(|c| *c > 0.0) {
        savings.push(format!("{} CO2e / {}", kg(c, fr), ctx.t("an", "year")));
    }
    if let Some(b) = f.saving_bytes.filter(|b| *b > 0) {
        savings.push(bytes(b as u64, fr));
    }
    let mut o = format!(
        "<section class=\"card\" aria-labelledby=\"f-{id}\"><h3 id=\"f-{id}\">{} — {}</h3><dl>\
         <dt>{}</dt><dd>{}{}</dd><dt>{}</dt><dd>{} → {}</dd><dt>{}</dt><dd>{}</dd>",
        kind_label(&f.kind, fr),
        subject,
        ctx.t("État", "State"),
        state_label(&f.state, fr),
        f.snoozed_until_ms
            .filter(|_| f.state == "snoozed")
            .map_or_else(String::new, |t| format!(
                " {} {}",
                ctx.t("jusqu'au", "until"),
                date(t)
            )),
        ctx.t("Constaté", "Seen"),
        date(f.first_seen_ms),
        date(f.last_seen_ms),
        ctx.t("Économie estimée", "Estimated saving"),
        if savings.is_empty() {
            "—".into()
        } else {
            savings.join(" · ")
        },
        id = esc(&urlenc(&f.id)),
    );
    if let Value::Object(ev) = &f.evidence {
        for (k, v) in ev {
            o.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>",
                esc(&k.replace('_', " ")),
                esc(&evidence_value(k, v, fr))
            ));
        }
    }
    o.push_str("</dl>");
    if f.state != "resolved" {
        let action = |what: &str| esc(&ctx.href(&format!("/findings/{}/{what}", urlenc(&f.id))));
        let back = format!(
            "<input type=\"hidden\" name=\"back\" value=\"{}\">",
            esc(&ctx.here())
        );
        if f.state != "acknowledged" {
            o.push_str(&format!(
                "<form class=\"inline\" method=\"post\" action=\"{}\">{back}<button>{}</button></form>",
                action("acknowledge"),
                ctx.t("Prendre en compte", "Acknowledge"),
            ));
        }
        o.push_str(&format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\">{back}\
             <label for=\"d-{id}\">{}</label><select id=\"d-{id}\" name=\"days\">\
             <option value=\"7\">7 {d}</option><option value=\"30\">30 {d}</option><option value=\"90\">90 {d}</option></select>\
             <button class=\"alt\">{}</button></form>",
            action("snooze"),
            ctx.t("Mettre en veille", "Snooze for"),
            ctx.t("Mettre en veille", "Snooze"),
            id = esc(&urlenc(&f.id)),
            d = ctx.t("jours", "days"),
        ));
    }
    o.push_str("</section>");
    o
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    host: Option<String>,
    done: Option<String>,
}

fn some(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

pub async fn page(
    State(s): State<AppState>,
    ctx: Ctx,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let q = q.map(|q| q.0).unwrap_or_default();
    let fail = |e| PageError(ctx.clone(), e);
    let filter = FindingFilter {
        kind: some(&q.kind),
        state: some(&q.state),
        agent_id: some(&q.host),
    };
    if let Some(k) = &filter.kind
        && Kind::parse(k).is_none()
    {
        return Err(fail(ConsoleError::BadRequest(format!("kind={k:?}"))));
    }
    if let Some(st) = &filter.state
        && !STATES.contains(&st.as_str())
    {
        return Err(fail(ConsoleError::BadRequest(format!("state={st:?}"))));
    }
    let f2 = filter.clone();
    let (list, agents) =
        blocking(move || Ok((s.jobs.with_conn(|c| db::list(c, &f2))?, s.reader.agents()?)))
            .await
            .map_err(fail)?;
    let names: HashMap<&str, &str> = agents
        .iter()
        .map(|a| (a.id.as_str(), a.hostname.as_deref().unwrap_or(&a.id)))
        .collect();
    let fr = ctx.fr;
    let mut o = super::done_notice(&ctx, q.done.as_deref());
    o.push_str(&format!("<h1>{}</h1>", ctx.t("Constats", "Findings")));
    // The filter form.
    let select = |id: &str,
                  label: &str,
                  any: &str,
                  opts: Vec<(String, String)>,
                  cur: &Option<String>| {
        let mut s = format!(
            "<label for=\"{id}\">{}</label><select id=\"{id}\" name=\"{id}\"><option value=\"\">{}</option>",
            esc(label),
            esc(any)
        );
        for (v, l) in opts {
            s.push_str(&format!(
                "<option value=\"{}\"{}>{}</option>",
                esc(&v),
                if cur.as_deref() == Some(v.as_str()) {
                    " selected"
                } else {
                    ""
                },
                l
            ));
        }
        s + "</select>"
    };
    o.push_str(&format!(
        "<form class=\"inline\" method=\"get\" action=\"/findings\">{}{}{}{}<button>{}</button></form>",
        select(
            "kind",
            ctx.t("Type", "Kind"),
            ctx.t("tous", "all"),
            Kind::ALL.iter().map(|k| (k.as_str().to_owned(), kind_label(k.as_str(), fr))).collect(),
            &filter.kind
        ),
        select(
            "state",
            ctx.t("État", "State"),
            ctx.t("tous", "all"),
            STATES.iter().map(|s| (s.to_string(), state_label(s, fr).to_owned())).collect(),
            &filter.state
        ),
        select(
            "host",
            ctx.t("Machine", "Machine"),
            ctx.t("toutes", "all"),
            agents.iter().map(|a| (a.id.clone(), esc(names[a.id.as_str()]))).collect(),
            &filter.agent_id
        ),
        ctx.lang_field(),
        ctx.t("Filtrer", "Filter"),
    ));
    o.push_str(&format!(
        "<p role=\"status\">{} {}</p>",
        count(list.len() as u64, fr),
        ctx.t("constat(s)", "finding(s)")
    ));
    for f in list.iter().take(MAX_LISTED) {
        let host = f
            .agent_id
            .as_deref()
            .map(|id| *names.get(id).unwrap_or(&id));
        o.push_str(&card(&ctx, f, host));
    }
    if list.len() > MAX_LISTED {
        o.push_str(&format!(
            "<p class=\"note\">{} {}</p>",
            count(MAX_LISTED as u64, fr),
            ctx.t(
                "premiers affichés : affinez le filtre.",
                "first shown: narrow the filter."
            )
        ));
    }
    Ok(layout::page(
        &ctx,
        ctx.t("Constats", "Findings"),
        Nav::Findings,
        &o,
    ))
}

#[derive(Debug, Deserialize)]
struct ActForm {
    back: Option<String>,
    days: Option<i64>,
}

/// `POST /findings/{id}/acknowledge`.
pub async fn acknowledge(
    _: Admin,
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    act(s, ctx, id, &body, "acknowledged").await
}

/// `POST /findings/{id}/snooze` (`days`: 1 to 365, default 7).
pub async fn snooze(
    _: Admin,
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    act(s, ctx, id, &body, "snoozed").await
}

async fn act(s: AppState, ctx: Ctx, id: String, body: &[u8], state: &'static str) -> PageResult {
    let fail = |e| PageError(ctx.clone(), e);
    let f: ActForm = form(body).map_err(fail)?;
    let until =
        (state == "snoozed").then(|| ctx.now_ms + f.days.unwrap_or(7).clamp(1, 365) * DAY_MS);
    let key = id.clone();
    let changed =
        blocking(move || Ok(s.jobs.with_conn(|c| db::set_state(c, &key, state, until))?))
            .await
            .map_err(fail)?;
    if !changed {
        return Err(fail(ConsoleError::NotFound(format!(
            "{} {id:?}",
            ctx.t("Aucun constat non résolu", "No unresolved finding")
        ))));
    }
    tracing::info!(finding = %id, state, "finding changed from the console");
    Ok(see_other(&ctx, f.back.as_deref(), "/findings", state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(state: &str) -> StoredFinding {
        StoredFinding {
            id: "bloat:ws<1>".into(),
            kind: "bloat".into(),
            agent_id: Some("ws<1>".into()),
            subject: "ws<1>".into(),
            state: state.into(),
            first_seen_ms: 0,
            last_seen_ms: 3_600_000,
            resolved_ms: None,
            snoozed_until_ms: None,
            saving_kwh_year: None,
            saving_kg_year: Some(1.5),
            saving_bytes: Some(2_000_000_000),
            evidence: json!({"reclaimable_bytes": 2_000_000_000u64, "scan_finished_ms": 0,
                "categories": [{"category": "temp", "files": 3, "bytes": 1500}]}),
        }
    }

    #[test]
    fn a_card_shows_evidence_in_units_and_escapes_everything() {
        let ctx = Ctx::new("/findings", vec![("lang".into(), "en".into())], None);
        let html = card(&ctx, &finding("open"), Some("<pc>"));
        assert!(
            html.contains(
                "Storage to free — <a href=\"/machines/ws%3C1%3E?lang=en\">&lt;pc&gt;</a>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<dt>reclaimable bytes</dt><dd>2.0 GB</dd>"),
            "{html}"
        );
        assert!(html.contains("<dd>1970-01-01 00:00 UTC</dd>"), "{html}");
        assert!(
            html.contains("bytes: 1.5 kB, category: temp, files: 3"),
            "{html}"
        );
        assert!(html.contains("1.5 kg CO2e / year · 2.0 GB"), "{html}");
        assert!(
            html.contains("action=\"/findings/bloat%3Aws%3C1%3E/acknowledge?lang=en\""),
            "{html}"
        );
        assert!(
            html.contains("name=\"back\" value=\"/findings?lang=en\""),
            "{html}"
        );
        assert!(!html.contains("<1>"), "unescaped: {html}");
    }

    #[test]
    fn forms_offer_only_what_the_state_allows() {
        let ctx = Ctx::new("/findings", vec![], None);
        let open = card(&ctx, &finding("open"), None);
        assert!(open.contains("/acknowledge\"") && open.contains("/snooze\""));
        let ack = card(&ctx, &finding("acknowledged"), None);
        assert!(!ack.contains("/acknowledge\"") && ack.contains("/snooze\""));
        let done = card(&ctx, &finding("resolved"), None);
        assert!(!done.contains("<form"), "{done}");
        assert!(done.contains("résolu"));
    }
}
