//! `/`: the fleet at a glance: machines online, power now, energy and
//! CO2e over the last 7 days (use and manufacture, the same computation
//! as `/api/v1/footprint`), open findings by kind with their savings,
//! reclaimable storage, campaigns under way, and the machines.

use super::fmt::{ago, bytes, count, date, esc, kg, kwh, pct, urlenc, watts};
use super::layout::{self, Ctx, Nav, table};
use super::{ConsoleError, PageError, PageResult, blocking, campaigns, chart, findings, machine};
use crate::campaign::{Campaign, State as Lifecycle};
use crate::footprint::compute::{DAY_MS, HOUR_MS, HourRow};
use crate::footprint::{Report, Window, compute};
use crate::http::AppState;
use crate::storage::FleetStorage;
use crate::store::findings::{self as db_findings, FindingFilter, StoredFinding};
use crate::store::read::AgentSummary;
use axum::extract::State;
use std::collections::{BTreeMap, HashMap};

/// At most this many machines are listed on the overview (the page must
/// stay light); the findings page filters by host for the others.
const MAX_MACHINES: usize = 100;

/// The footprint over the 7 days to now (whole hours, as the API rounds
/// them), by day, for the fleet or one host; and the hourly rows.
pub(crate) fn week(
    s: &AppState,
    host: Option<&str>,
    now_ms: i64,
) -> Result<(Report, Vec<HourRow>), ConsoleError> {
    let to = (now_ms + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    let from = to - 7 * DAY_MS;
    let (hosts, hours) = s.reader.footprint_inputs(from, to, host, None)?;
    let report = compute(
        &s.footprint.cfg,
        &s.footprint.grid,
        &hosts,
        &hours,
        Window {
            from_ms: from,
            to_ms: to,
            step_ms: Some(DAY_MS),
            now_ms,
        },
    );
    Ok((report, hours))
}

/// Mean power of each host over its latest hour with samples, if that
/// hour is the current or the previous one.
pub(crate) fn power_now(hours: &[HourRow], now_ms: i64) -> HashMap<String, f64> {
    let mut latest: HashMap<&str, &HourRow> = HashMap::new();
    for h in hours.iter().filter(|h| h.covered_ms > 0) {
        let e = latest.entry(&h.agent_id).or_insert(h);
        if h.hour_ms > e.hour_ms {
            *e = h;
        }
    }
    latest
        .into_iter()
        .filter(|(_, h)| h.hour_ms >= now_ms - 2 * HOUR_MS)
        .map(|(id, h)| (id.to_owned(), h.energy_j * 1000.0 / h.covered_ms as f64))
        .collect()
}

struct Fleet {
    agents: Vec<AgentSummary>,
    week: Report,
    power: HashMap<String, f64>,
    open: Vec<StoredFinding>,
    storage: FleetStorage,
    campaigns: Vec<Campaign>,
}

pub async fn page(State(s): State<AppState>, ctx: Ctx) -> PageResult {
    let now = ctx.now_ms;
    let fleet = blocking(move || {
        let (week, hours) = week(&s, None, now)?;
        let open = FindingFilter {
            state: Some("open".into()),
            ..Default::default()
        };
        Ok(Fleet {
            agents: s.reader.agents()?,
            power: power_now(&hours, now),
            week,
            open: s.jobs.with_conn(|c| db_findings::list(c, &open))?,
            storage: crate::storage::fleet(&s.reader.storage_fleet(None)?, 5),
            campaigns: s
                .jobs
                .with_campaigns(|c| Ok(crate::store::campaigns::list(c)?))?,
        })
    })
    .await
    .map_err(|e| PageError(ctx.clone(), e))?;
    Ok(layout::page(
        &ctx,
        ctx.t("Parc", "Fleet"),
        Nav::Fleet,
        &render(&ctx, &fleet),
    ))
}

fn render(ctx: &Ctx, f: &Fleet) -> String {
    let fr = ctx.fr;
    let online: Vec<&AgentSummary> = f.agents.iter().filter(|a| a.online).collect();
    let power: f64 = online.iter().filter_map(|a| f.power.get(&a.id)).sum();
    let w = &f.week.fleet;
    let mut o = format!(
        "<h1>{}</h1><ul class=\"kpi\">\
         <li><strong>{} / {}</strong>{}</li>\
         <li><strong>{}</strong>{}</li>\
         <li><strong>{}</strong>{}</li>\
         <li><strong>{}</strong>{}</li>\
         <li><strong>{}</strong>{}</li></ul>",
        ctx.t("Le parc", "The fleet"),
        count(online.len() as u64, fr),
        count(f.agents.len() as u64, fr),
        ctx.t("machines en ligne", "machines online"),
        watts(power, fr),
        ctx.t(
            "consommés en ce moment (moyenne de la dernière heure)",
            "drawn now (mean over the last hour)"
        ),
        kwh(w.facility_kwh, fr),
        ctx.t(
            "d'électricité sur 7 jours, bâtiment compris (PUE)",
            "of electricity over 7 days, building included (PUE)"
        ),
        kg(w.total_kg, fr),
        ctx.t(
            "CO2e sur 7 jours, usage et fabrication",
            "CO2e over 7 days, use and manufacture"
        ),
        bytes(f.storage.reclaimable_bytes, fr),
        ctx.t("de stockage récupérable", "of storage to reclaim"),
    );
    o.push_str(&format!(
        "<p>{} {} {} {} · {} {} · {} {}.</p>",
        ctx.t("Sur 7 jours :", "Over 7 days:"),
        kg(w.use_kg, fr),
        ctx.t("CO2e d'usage et", "CO2e from use and"),
        kg(w.embodied_kg, fr),
        ctx.t("de fabrication amortie", "from manufacture, amortised"),
        w.measured_share.map_or_else(|| "—".into(), |s| pct(s, fr)),
        ctx.t(
            "de l'énergie mesurée (le reste est modélisé)",
            "of the energy measured (the rest is modelled)"
        ),
        ctx.t(
            &format!("couverture {}", pct(w.coverage, fr)),
            &format!("coverage {}", pct(w.coverage, fr))
        ),
    ));
    let daily: Vec<(i64, f64)> = f
        .week
        .series
        .iter()
        .map(|b| (b.start_ms, b.energy_kwh))
        .collect();
    o.push_str(&chart::line(
        ctx,
        "wk",
        ctx.t("Énergie par jour", "Energy per day"),
        &daily,
        &|v| kwh(v, fr),
    ));

    // Findings by kind.
    o.push_str(&format!(
        "<h2>{}</h2>",
        ctx.t("Constats ouverts", "Open findings")
    ));
    if f.open.is_empty() {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t("Aucun constat ouvert.", "No open finding.")
        ));
    } else {
        let mut by: BTreeMap<&str, (u64, f64, f64, i64)> = BTreeMap::new();
        for x in &f.open {
            let e = by.entry(&x.kind).or_default();
            e.0 += 1;
            e.1 += x.saving_kwh_year.unwrap_or(0.0);
            e.2 += x.saving_kg_year.unwrap_or(0.0);
            e.3 += x.saving_bytes.unwrap_or(0);
        }
        let rows: String = by
            .iter()
            .map(|(k, (n, e, c, b))| {
                format!(
                    "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&ctx.href(&format!("/findings?kind={}&state=open", urlenc(k)))),
                    findings::kind_label(k, fr),
                    count(*n, fr),
                    if *e > 0.0 { kwh(*e, fr) } else { "—".into() },
                    if *c > 0.0 { kg(*c, fr) } else { "—".into() },
                    if *b > 0 { bytes(*b as u64, fr) } else { "—".into() },
                )
            })
            .collect();
        o.push_str(&table(
            "tf",
            ctx.t(
                "Économies estimées si chaque constat est traité",
                "Estimated savings if each finding is acted upon",
            ),
            &[
                (ctx.t("Type", "Kind"), false),
                (ctx.t("Nombre", "Count"), true),
                (ctx.t("Énergie / an", "Energy / year"), true),
                (ctx.t("CO2e / an", "CO2e / year"), true),
                (ctx.t("Stockage", "Storage"), true),
            ],
            &rows,
        ));
    }

    // Storage.
    o.push_str(&format!(
        "<h2>{}</h2><p>{} {} {} {} {}.</p>",
        ctx.t("Stockage", "Storage"),
        bytes(f.storage.reclaimable_bytes, fr),
        ctx.t("récupérables sur", "reclaimable on"),
        count(f.storage.hosts as u64, fr),
        ctx.t("machines analysées, dont", "machines scanned, of which"),
        ctx.t(
            &format!(
                "{} en copies du même contenu sur plusieurs machines",
                bytes(f.storage.redundant_bytes, fr)
            ),
            &format!(
                "{} in copies of the same content on several machines",
                bytes(f.storage.redundant_bytes, fr)
            ),
        ),
    ));
    if !f.storage.categories.is_empty() {
        o.push_str(&machine::category_table(
            ctx,
            "ts",
            f.storage
                .categories
                .iter()
                .map(|c| (c.category.as_str(), c.files, c.bytes)),
        ));
    }

    // Campaigns under way.
    let live: Vec<&Campaign> = f
        .campaigns
        .iter()
        .filter(|c| matches!(c.state, Lifecycle::Running | Lifecycle::Planned))
        .collect();
    o.push_str(&format!(
        "<h2>{}</h2>",
        ctx.t(
            "Campagnes en cours et à venir",
            "Campaigns running and planned"
        )
    ));
    if live.is_empty() {
        o.push_str(&format!(
            "<p>{} <a href=\"{}\">{}</a></p>",
            ctx.t("Aucune.", "None."),
            esc(&ctx.href("/campaigns")),
            ctx.t("Créer une campagne", "Create a campaign")
        ));
    } else {
        o.push_str("<ul>");
        for c in live {
            o.push_str(&format!(
                "<li><a href=\"{}\">{}</a> — {}, {} {}</li>",
                esc(&ctx.href(&format!("/campaigns#c-{}", urlenc(&c.id)))),
                esc(&c.name),
                campaigns::state_label(c.state, fr),
                ctx.t("jusqu'au", "until"),
                date(c.ends_at_ms)
            ));
        }
        o.push_str("</ul>");
    }

    // Machines.
    o.push_str(&format!("<h2>{}</h2>", ctx.t("Machines", "Machines")));
    let mut rows = String::new();
    for a in f.agents.iter().take(MAX_MACHINES) {
        let host = f.week.hosts.iter().find(|h| h.id == a.id);
        rows.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&ctx.href(&format!("/machines/{}", urlenc(&a.id)))),
            esc(a.hostname.as_deref().unwrap_or(&a.id)),
            esc(host.map_or("", |h| h.group.as_str())),
            if a.online {
                format!("<span class=\"on\">{}</span>", ctx.t("en ligne", "online"))
            } else {
                format!("<span class=\"off\">{} {}</span>", ctx.t("vu", "seen"), ago(a.last_seen_ms, ctx.now_ms, fr))
            },
            f.power.get(&a.id).filter(|_| a.online).map_or_else(|| "—".into(), |p| watts(*p, fr)),
            host.map_or_else(|| "—".into(), |h| kg(h.totals.total_kg, fr)),
        ));
    }
    if f.agents.is_empty() {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t(
                "Aucune machine ne s'est encore présentée. Lancez un agent (sobre-agent) vers ce collecteur.",
                "No machine has reported yet. Start an agent (sobre-agent) pointing at this collector."
            )
        ));
    } else {
        o.push_str(&table(
            "tm",
            ctx.t(
                "Les machines qui rendent compte à ce collecteur",
                "The machines that report to this collector",
            ),
            &[
                (ctx.t("Machine", "Machine"), false),
                (ctx.t("Groupe", "Group"), false),
                (ctx.t("État", "State"), false),
                (ctx.t("Puissance", "Power"), true),
                (ctx.t("CO2e 7 j", "CO2e 7 d"), true),
            ],
            &rows,
        ));
        if f.agents.len() > MAX_MACHINES {
            o.push_str(&format!(
                "<p class=\"note\">{} {}.</p>",
                count(MAX_MACHINES as u64, fr),
                ctx.t(
                    "premières machines affichées ; l'API les liste toutes",
                    "first machines shown; the API lists them all"
                )
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, hour_ms: i64, energy_j: f64, covered_ms: i64) -> HourRow {
        HourRow {
            agent_id: id.into(),
            hour_ms,
            energy_j,
            measured_j: 0.0,
            covered_ms,
        }
    }

    #[test]
    fn power_now_is_the_mean_over_each_hosts_latest_recent_hour() {
        let now = 10 * HOUR_MS + 600_000;
        let p = power_now(
            &[
                row("a", 9 * HOUR_MS, 36_000.0, HOUR_MS),
                row("a", 10 * HOUR_MS, 6_000.0, 600_000),
                row("b", 9 * HOUR_MS, 72_000.0, HOUR_MS),
                row("b", 10 * HOUR_MS, 0.0, 0),
                row("old", 5 * HOUR_MS, 36_000.0, HOUR_MS),
            ],
            now,
        );
        assert_eq!(p.get("a"), Some(&10.0));
        assert_eq!(
            p.get("b"),
            Some(&20.0),
            "an hour without samples is skipped"
        );
        assert_eq!(p.get("old"), None, "hours ago is not now");
    }
}
