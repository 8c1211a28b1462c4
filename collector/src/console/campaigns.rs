//! `/campaigns`: Clean Up Day campaigns: each with its state, scope and
//! live progress, a link to its published report, the buttons that move it
//! along, and a form to create one. The forms call the same
//! `store::campaigns` functions as the API.

use super::access::Admin;
use super::fmt::{bytes, count, date, esc, urlenc};
use super::layout::{self, Ctx, Nav};
use super::{ConsoleError, PageError, PageResult, blocking, form, see_other};
use crate::campaign::cli::parse_time;
use crate::campaign::report::Report;
use crate::campaign::{Campaign, NewCampaign, Scope, State as Lifecycle, factors};
use crate::http::AppState;
use crate::store::campaigns as db;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

/// What people call each state of a campaign.
pub fn state_label(s: Lifecycle, fr: bool) -> &'static str {
    match (s, fr) {
        (Lifecycle::Planned, true) => "à venir",
        (Lifecycle::Running, true) => "en cours",
        (Lifecycle::Ended, true) => "terminée",
        (Lifecycle::Archived, true) => "archivée",
        (s, false) => s.as_str(),
    }
}

fn scope_text(ctx: &Ctx, s: &Scope) -> String {
    if s.is_everyone() {
        return ctx.t("toutes les machines", "every machine").into();
    }
    let mut parts = Vec::new();
    for (label, list) in [
        (ctx.t("groupes", "groups"), &s.groups),
        (ctx.t("sites", "sites"), &s.sites),
        (ctx.t("machines", "hosts"), &s.hosts),
    ] {
        if !list.is_empty() {
            parts.push(format!("{label} {}", list.join(", ")));
        }
    }
    parts.join(" ; ")
}

/// One campaign, with the buttons its state allows.
fn card(ctx: &Ctx, c: &Campaign, r: Option<&Report>) -> String {
    let fr = ctx.fr;
    let mut o = format!(
        "<section class=\"card\" id=\"c-{id}\" aria-labelledby=\"h-{id}\"><h3 id=\"h-{id}\">{}</h3><dl>\
         <dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} → {}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>",
        esc(&c.name),
        ctx.t("État", "State"),
        state_label(c.state, fr),
        ctx.t("Dates", "Dates"),
        date(c.starts_at_ms),
        date(c.ends_at_ms),
        ctx.t("Concerne", "Scope"),
        esc(&scope_text(ctx, &c.scope)),
        ctx.t("Identifiant", "Id"),
        esc(&c.id),
        id = esc(&urlenc(&c.id)),
    );
    if let Some(r) = r {
        o.push_str(&format!(
            "<dt>{}</dt><dd>{} {} · {} {} · {} / {} {}{}</dd>",
            ctx.t("Progression", "Progress"),
            bytes(r.totals.bytes_deleted, fr),
            ctx.t("supprimés", "deleted"),
            count(r.totals.files_deleted, fr),
            ctx.t("fichiers", "files"),
            count(r.hosts_with_baseline as u64, fr),
            count(r.hosts_in_scope as u64, fr),
            ctx.t("machines avec un état initial", "hosts with a baseline"),
            if r.complete {
                ""
            } else {
                ctx.t(" (provisoire)", " (provisional)")
            },
        ));
    }
    o.push_str(&format!(
        "</dl><p><a href=\"/api/v1/campaigns/{}/report.html?lang={}\">{} {}</a></p>",
        esc(&urlenc(&c.id)),
        ctx.lang(),
        ctx.t("Bilan publiable de", "Printable report of"),
        esc(&c.name),
    ));
    let button = |what: &str, label: &str| {
        format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\"><button aria-describedby=\"h-{}\">{}</button></form>",
            esc(&ctx.href(&format!("/campaigns/{}/{what}", urlenc(&c.id)))),
            esc(&urlenc(&c.id)),
            label
        )
    };
    match c.state {
        Lifecycle::Planned => {
            o.push_str(&button("start", ctx.t("Démarrer maintenant", "Start now")))
        }
        Lifecycle::Running => o.push_str(&button("end", ctx.t("Terminer maintenant", "End now"))),
        Lifecycle::Ended => o.push_str(&button("archive", ctx.t("Archiver", "Archive"))),
        Lifecycle::Archived => {}
    }
    o.push_str("</section>");
    o
}

fn create_form(ctx: &Ctx, s: &AppState) -> String {
    let field = |name: &str, label: &str, kind: &str, extra: &str, hint: &str| {
        format!(
            "<label for=\"n-{name}\">{label}</label><input id=\"n-{name}\" name=\"{name}\" type=\"{kind}\"{extra}{}>{}",
            if hint.is_empty() {
                String::new()
            } else {
                format!(" aria-describedby=\"h-n-{name}\"")
            },
            if hint.is_empty() {
                String::new()
            } else {
                format!("<span class=\"note\" id=\"h-n-{name}\">{hint}</span>")
            },
        )
    };
    let f = &s.footprint.cfg;
    let options: String = factors::all(f.grid_g_per_kwh, f.pue_server)
        .iter()
        .map(|x| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                x.key,
                if x.key == factors::DEFAULT {
                    " selected"
                } else {
                    ""
                },
                esc(x.label)
            )
        })
        .collect();
    let list = ctx.t(
        "séparés par des virgules ; tout vide : toutes les machines",
        "comma-separated; all empty: every machine",
    );
    format!(
        "<h2 id=\"new\">{}</h2><form class=\"grid\" method=\"post\" action=\"{}\">{}{}{}{}{}{}{}{}\
         <label for=\"n-factor\">{}</label><select id=\"n-factor\" name=\"factor\">{options}</select>\
         <button>{}</button></form>",
        ctx.t("Nouvelle campagne", "New campaign"),
        esc(&ctx.href("/campaigns")),
        field(
            "name",
            ctx.t("Nom", "Name"),
            "text",
            " required maxlength=\"200\"",
            ""
        ),
        field(
            "id",
            ctx.t("Identifiant court", "Short id"),
            "text",
            " required pattern=\"[A-Za-z0-9._\\-]{1,64}\"",
            ctx.t(
                "lettres, chiffres, . _ - (dans les adresses)",
                "letters, digits, . _ - (used in addresses)"
            )
        ),
        field(
            "starts",
            ctx.t("Début (UTC)", "Start (UTC)"),
            "datetime-local",
            " required",
            ""
        ),
        field(
            "ends",
            ctx.t("Fin (UTC)", "End (UTC)"),
            "datetime-local",
            " required",
            ""
        ),
        field("groups", ctx.t("Groupes", "Groups"), "text", "", list),
        field("sites", ctx.t("Sites", "Sites"), "text", "", list),
        field("hosts", ctx.t("Machines", "Hosts"), "text", "", list),
        field(
            "rescan_minutes",
            ctx.t(
                "Recompter toutes les (minutes)",
                "Count again every (minutes)"
            ),
            "number",
            " min=\"1\" value=\"60\"",
            ""
        ),
        ctx.t("Facteur CO2e du bilan", "CO2e factor of the report"),
        ctx.t("Créer", "Create"),
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    done: Option<String>,
}

pub async fn page(
    State(s): State<AppState>,
    ctx: Ctx,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let now = ctx.now_ms;
    let s2 = s.clone();
    let list = blocking(move || {
        let list = s2.jobs.with_campaigns(|c| Ok(db::list(c)?))?;
        let mut out = Vec::new();
        for c in list {
            let r = match c.state {
                Lifecycle::Running | Lifecycle::Ended => Some(s2.jobs.campaign_report(&c.id, now)?),
                _ => None,
            };
            out.push((c, r));
        }
        Ok(out)
    })
    .await
    .map_err(|e| PageError(ctx.clone(), e))?;
    let mut o = super::done_notice(&ctx, q.as_ref().ok().and_then(|q| q.done.as_deref()));
    o.push_str(&format!(
        "<h1>{}</h1><p><a href=\"#new\">{}</a></p>",
        ctx.t("Campagnes de nettoyage", "Clean-up campaigns"),
        ctx.t("Créer une campagne", "Create a campaign"),
    ));
    if list.is_empty() {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t("Aucune campagne pour l'instant.", "No campaign yet.")
        ));
    }
    for (c, r) in &list {
        o.push_str(&card(&ctx, c, r.as_ref()));
    }
    o.push_str(&create_form(&ctx, &s));
    Ok(layout::page(
        &ctx,
        ctx.t("Campagnes", "Campaigns"),
        Nav::Campaigns,
        &o,
    ))
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    id: String,
    name: String,
    starts: String,
    ends: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    sites: String,
    #[serde(default)]
    hosts: String,
    factor: Option<String>,
    rescan_minutes: Option<u32>,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

impl CreateForm {
    fn campaign(self) -> Result<NewCampaign, ConsoleError> {
        Ok(NewCampaign {
            id: self.id.trim().into(),
            name: self.name,
            starts_at_ms: parse_time(self.starts.trim())?,
            ends_at_ms: parse_time(self.ends.trim())?,
            scope: Scope {
                groups: list(&self.groups),
                sites: list(&self.sites),
                hosts: list(&self.hosts),
            },
            factor: self
                .factor
                .filter(|f| !f.is_empty())
                .unwrap_or_else(crate::campaign::default_factor),
            rescan_interval_s: self.rescan_minutes.unwrap_or(60).saturating_mul(60),
        })
    }
}

/// `POST /campaigns`: creates a campaign from the form.
pub async fn create(_: Admin, State(s): State<AppState>, ctx: Ctx, body: Bytes) -> PageResult {
    let fail = |e| PageError(ctx.clone(), e);
    let new = form::<CreateForm>(&body)
        .and_then(CreateForm::campaign)
        .map_err(fail)?;
    let now = ctx.now_ms;
    let jobs = s.jobs.clone();
    let c = blocking(move || Ok(jobs.with_campaigns(|c| db::create(c, &new, now))?))
        .await
        .map_err(fail)?;
    tracing::info!(campaign = %c.id, "campaign created from the console");
    // A campaign starting within a day has nudges to queue.
    s.jobs.routes.online.notify_one();
    Ok(see_other(
        &ctx,
        Some(&format!("/campaigns#c-{}", urlenc(&c.id))),
        "/campaigns",
        "created",
    ))
}

async fn transition(s: AppState, ctx: Ctx, id: String, to: Lifecycle, done: &str) -> PageResult {
    let now = ctx.now_ms;
    let jobs = s.jobs.clone();
    let c = blocking(move || Ok(jobs.with_campaigns(|c| db::transition(c, &id, to, now))?))
        .await
        .map_err(|e| PageError(ctx.clone(), e))?;
    // Commands leave on the next dispatch pass: make it now.
    s.jobs.routes.online.notify_one();
    let back = format!("/campaigns#c-{}", urlenc(&c.id));
    Ok(see_other(&ctx, Some(&back), "/campaigns", done))
}

/// `POST /campaigns/{id}/start`.
pub async fn start(
    _: Admin,
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    transition(s, ctx, id, Lifecycle::Running, "started").await
}

/// `POST /campaigns/{id}/end`.
pub async fn end(
    _: Admin,
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    transition(s, ctx, id, Lifecycle::Ended, "ended").await
}

/// `POST /campaigns/{id}/archive`.
pub async fn archive(
    _: Admin,
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    transition(s, ctx, id, Lifecycle::Archived, "archived").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_form_reads_dates_lists_and_minutes() {
        let f: CreateForm = form(
            b"id=cud&name=Clean+Up&starts=2027-03-20T09%3A00&ends=2027-03-21T18%3A00\
              &groups=dsi%2C+rh+%2C&sites=&hosts=&factor=&rescan_minutes=5",
        )
        .expect("form");
        let c = f.campaign().expect("campaign");
        assert_eq!(c.starts_at_ms, parse_time("2027-03-20T09:00").expect("t"));
        assert_eq!(c.scope.groups, vec!["dsi", "rh"]);
        assert!(c.scope.sites.is_empty());
        assert_eq!(c.factor, factors::DEFAULT);
        assert_eq!(c.rescan_interval_s, 300);
        let bad: CreateForm = form(b"id=x&name=n&starts=tomorrow&ends=2027-01-01").expect("form");
        assert!(matches!(bad.campaign(), Err(ConsoleError::Campaign(_))));
    }
}
