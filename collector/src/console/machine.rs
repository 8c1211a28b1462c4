//! `/machines/{id}`: one machine: inventory and age (from the footprint's
//! devices), usage and power over the last hour (samples) and the last 7
//! days (hourly roll-up) as SVG charts, storage categories, its findings
//! and the nudges it received.

use super::fmt::{ago, bytes, count, date, dec, esc, kg, kwh, pct, watts};
use super::layout::{self, Ctx, Nav, table};
use super::{ConsoleError, PageError, PageResult, blocking, chart, findings, overview};
use crate::footprint::Report;
use crate::footprint::compute::{HOUR_MS, HourRow};
use crate::http::AppState;
use crate::store::findings::{self as db, FindingFilter, StoredFinding, StoredNudge};
use crate::store::read::{AgentDetail, Sample};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use sobre_proto::v1::{Inventory, StorageSummary};
use std::collections::BTreeMap;

/// What people call each storage category.
pub fn category_label(c: &str, fr: bool) -> String {
    let (f, e) = match c {
        "duplicates" => ("Doublons", "Duplicates"),
        "cold" => ("Fichiers dormants", "Cold files"),
        "temp" => ("Fichiers temporaires", "Temporary files"),
        "trash" => ("Corbeille", "Trash"),
        "old_downloads" => ("Vieux téléchargements", "Old downloads"),
        "large" => ("Gros fichiers", "Large files"),
        "empty_files" => ("Fichiers vides", "Empty files"),
        "empty_dirs" => ("Dossiers vides", "Empty folders"),
        "broken_links" => ("Liens cassés", "Broken links"),
        other => return esc(other),
    };
    (if fr { f } else { e }).to_owned()
}

/// Storage by category: (category, files, bytes) rows.
pub fn category_table<'a>(
    ctx: &Ctx,
    id: &str,
    rows: impl Iterator<Item = (&'a str, u64, u64)>,
) -> String {
    let fr = ctx.fr;
    let rows: String = rows
        .map(|(c, n, b)| {
            format!(
                "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                category_label(c, fr),
                count(n, fr),
                bytes(b, fr)
            )
        })
        .collect();
    table(
        id,
        ctx.t(
            "Par catégorie (elles se recoupent : ne pas les additionner)",
            "By category (they overlap: do not add them up)",
        ),
        &[
            (ctx.t("Catégorie", "Category"), false),
            (ctx.t("Fichiers", "Files"), true),
            (ctx.t("Volume", "Size"), true),
        ],
        &rows,
    )
}

#[derive(Debug, Deserialize)]
pub struct MachineQuery {
    done: Option<String>,
}

struct Machine {
    agent: AgentDetail,
    week: Report,
    hours: Vec<HourRow>,
    samples: Vec<Sample>,
    storage: Option<StorageSummary>,
    findings: Vec<StoredFinding>,
    nudges: Vec<StoredNudge>,
}

pub async fn page(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    q: Result<Query<MachineQuery>, QueryRejection>,
) -> PageResult {
    let now = ctx.now_ms;
    let fail = |e| PageError(ctx.clone(), e);
    let m = blocking(move || {
        let Some(agent) = s.reader.agent(&id)? else {
            return Ok(None);
        };
        let (week, hours) = overview::week(&s, Some(&id), now)?;
        let filter = FindingFilter {
            agent_id: Some(id.clone()),
            ..Default::default()
        };
        Ok(Some(Machine {
            agent,
            week,
            hours: hours.into_iter().filter(|h| h.agent_id == id).collect(),
            samples: s
                .reader
                .samples(&id, now - HOUR_MS, 10_000)?
                .unwrap_or_default(),
            storage: s
                .reader
                .storage(&id)?
                .flatten()
                .and_then(|v| serde_json::from_value(v).ok()),
            findings: s.jobs.with_conn(|c| db::list(c, &filter))?,
            nudges: s.jobs.with_conn(|c| db::nudges_of(c, &id))?,
        }))
    })
    .await
    .map_err(fail)?
    .ok_or_else(|| {
        fail(ConsoleError::NotFound(
            ctx.t(
                "Aucune machine de cet identifiant.",
                "No machine with this id.",
            )
            .into(),
        ))
    })?;
    let name = m
        .agent
        .summary
        .hostname
        .clone()
        .unwrap_or_else(|| m.agent.summary.id.clone());
    let done = q.as_ref().ok().and_then(|q| q.done.as_deref());
    Ok(layout::page(
        &ctx,
        &name,
        Nav::Fleet,
        &render(&ctx, &m, &name, done),
    ))
}

fn render(ctx: &Ctx, m: &Machine, name: &str, done: Option<&str>) -> String {
    let fr = ctx.fr;
    let a = &m.agent.summary;
    let inv: Inventory = m
        .agent
        .inventory
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let mut o = super::done_notice(ctx, done);
    o.push_str(&format!(
        "<h1>{}</h1><p>{} · {} {} · {} {}</p>",
        esc(name),
        if a.online {
            format!("<span class=\"on\">{}</span>", ctx.t("en ligne", "online"))
        } else {
            format!(
                "<span class=\"off\">{}</span>",
                ctx.t("hors ligne", "offline")
            )
        },
        ctx.t("vue pour la dernière fois", "last seen"),
        ago(a.last_seen_ms, ctx.now_ms, fr),
        ctx.t("connue depuis le", "known since"),
        date(a.first_seen_ms),
    ));
    let host = m.week.hosts.first();
    let power = overview::power_now(&m.hours, ctx.now_ms)
        .get(&a.id)
        .copied();
    if let Some(h) = host {
        o.push_str(&format!(
            "<ul class=\"kpi\"><li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li>\
             <li><strong>{}</strong>{}</li></ul>",
            power.map_or_else(|| "—".into(), |p| watts(p, fr)),
            ctx.t("puissance moyenne, dernière heure", "mean power, last hour"),
            kwh(h.totals.energy_kwh, fr),
            ctx.t("sur 7 jours", "over 7 days"),
            kg(h.totals.total_kg, fr),
            ctx.t(
                "CO2e sur 7 jours (usage et fabrication)",
                "CO2e over 7 days (use and manufacture)"
            ),
        ));
    }

    // Inventory.
    let mut dl = String::new();
    let mut item = |k: &str, v: String| {
        if !v.trim().is_empty() {
            dl.push_str(&format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v)));
        }
    };
    item(ctx.t("Identifiant", "Id"), a.id.clone());
    item(ctx.t("Groupe", "Group"), inv.group.clone());
    item(ctx.t("Site", "Site"), inv.site.clone());
    item(ctx.t("Type", "Type"), inv.chassis.clone());
    item(
        ctx.t("Modèle", "Model"),
        format!("{} {}", inv.vendor, inv.model),
    );
    item(
        ctx.t("Système", "System"),
        format!(
            "{} {} ({}, {})",
            inv.os_name, inv.os_version, inv.kernel, inv.arch
        ),
    );
    item(
        ctx.t("Processeur", "Processor"),
        format!(
            "{} — {} {} / {} {}{}",
            inv.cpu_model,
            inv.cpu_cores,
            ctx.t("cœurs", "cores"),
            inv.cpu_threads,
            ctx.t("fils", "threads"),
            if inv.cpu_tdp_w > 0.0 {
                format!(", TDP {}", watts(f64::from(inv.cpu_tdp_w), fr))
            } else {
                String::new()
            }
        ),
    );
    item(
        ctx.t("Mémoire", "Memory"),
        if inv.mem_total_bytes > 0 {
            bytes(inv.mem_total_bytes, fr)
        } else {
            String::new()
        },
    );
    let disks: Vec<String> = inv
        .disks
        .iter()
        .map(|d| {
            format!(
                "{} {} ({})",
                d.name,
                bytes(d.size_bytes, fr),
                if d.rotational { "HDD" } else { "SSD" }
            )
        })
        .collect();
    item(ctx.t("Disques", "Disks"), disks.join(", "));
    let monitors: Vec<String> = inv
        .monitors
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.manufacturer,
                s.model,
                if s.year > 0 {
                    format!(" ({})", s.year)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    item(ctx.t("Écrans", "Monitors"), monitors.join(", "));
    let batteries: Vec<String> = inv
        .batteries
        .iter()
        .filter(|b| b.design_capacity_wh_milli > 0)
        .map(|b| {
            format!(
                "{} : {} {} ({} {})",
                b.name,
                pct(
                    b.full_capacity_wh_milli as f64 / b.design_capacity_wh_milli as f64,
                    fr
                ),
                ctx.t("de sa capacité d'origine", "of its design capacity"),
                b.cycle_count,
                ctx.t("cycles", "cycles")
            )
        })
        .collect();
    item(ctx.t("Batteries", "Batteries"), batteries.join(", "));
    item(ctx.t("Date du BIOS", "BIOS date"), inv.bios_date.clone());
    item(ctx.t("Agent", "Agent"), inv.agent_version.clone());
    o.push_str(&format!(
        "<h2>{}</h2><div class=\"card\"><dl>{dl}</dl></div>",
        ctx.t("Inventaire", "Inventory")
    ));

    // Age and manufacture.
    if let Some(h) = host
        && !h.devices.is_empty()
    {
        let rows: String = h
            .devices
            .iter()
            .map(|d| {
                let years = (ctx.now_ms - d.since_ms) as f64 / crate::footprint::compute::YEAR_MS;
                let from = match d.since_from {
                    "bios" => ctx.t("date du BIOS", "BIOS date"),
                    "edid" => ctx.t("année de l'écran", "monitor's year"),
                    _ => ctx.t("première connexion", "first seen"),
                };
                format!(
                    "<tr><th scope=\"row\">{}</th><td class=\"n\">{} {}</td><td>{}</td><td class=\"n\">{} {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&d.name),
                    dec(years.max(0.0), fr),
                    ctx.t("ans", "years"),
                    esc(from),
                    dec(d.lifetime_years, fr),
                    if d.past_lifetime { ctx.t("ans (dépassée)", "years (past)") } else { ctx.t("ans", "years") },
                    kg(d.embodied_kg, fr),
                    kg(d.life_extension_kg_per_year, fr),
                )
            })
            .collect();
        o.push_str(&format!(
            "<h2>{}</h2>",
            ctx.t("Âge et fabrication", "Age and manufacture")
        ));
        o.push_str(&table(
            "ta",
            ctx.t(
                "Chaque année de vie en plus évite d'en fabriquer un autre",
                "Each more year of life avoids making another",
            ),
            &[
                (ctx.t("Appareil", "Device"), false),
                (ctx.t("Âge", "Age"), true),
                (ctx.t("Depuis", "Since"), false),
                (ctx.t("Durée de vie prévue", "Planned life"), true),
                (ctx.t("CO2e de fabrication", "Manufacture CO2e"), true),
                (
                    ctx.t("Évité par année de plus", "Avoided per extra year"),
                    true,
                ),
            ],
            &rows,
        ));
    }

    // Usage and power.
    o.push_str(&format!(
        "<h2>{}</h2>",
        ctx.t("Usage et puissance", "Usage and power")
    ));
    let cpu: Vec<(i64, f64)> = m
        .samples
        .iter()
        .filter_map(|s| Some((s.sent_at_ms, s.cpu_percent?)))
        .collect();
    let pw: Vec<(i64, f64)> = m
        .samples
        .iter()
        .filter_map(|s| Some((s.sent_at_ms, s.power_w?)))
        .collect();
    let hourly: Vec<(i64, f64)> = m
        .hours
        .iter()
        .filter(|h| h.covered_ms > 0)
        .map(|h| (h.hour_ms, h.energy_j * 1000.0 / h.covered_ms as f64))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let charts = [
        chart::line(
            ctx,
            "cp",
            ctx.t("Processeur, dernière heure (%)", "Processor, last hour (%)"),
            &chart::buckets(&cpu, 60),
            &|v| format!("{} %", dec(v, fr)),
        ),
        chart::line(
            ctx,
            "pw",
            ctx.t("Puissance, dernière heure", "Power, last hour"),
            &chart::buckets(&pw, 60),
            &|v| watts(v, fr),
        ),
        chart::line(
            ctx,
            "ph",
            ctx.t(
                "Puissance moyenne par heure, 7 jours",
                "Mean power per hour, 7 days",
            ),
            &hourly,
            &|v| watts(v, fr),
        ),
    ];
    if charts.iter().all(String::is_empty) {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t("Pas encore assez de mesures.", "Not enough samples yet.")
        ));
    }
    for c in charts {
        o.push_str(&c);
    }
    if let Some(source) = m.samples.last().and_then(|s| s.power_source.as_deref()) {
        o.push_str(&format!(
            "<p class=\"note\">{} {}.</p>",
            ctx.t("Source de la puissance :", "Power from:"),
            match source {
                "rapl" => ctx.t(
                    "mesurée par le processeur (RAPL)",
                    "measured by the processor (RAPL)"
                ),
                "battery" => ctx.t("mesurée sur la batterie", "measured on the battery"),
                _ => ctx.t(
                    "modèle (charge et composants, voir METHODOLOGY.md)",
                    "model (load and components, see METHODOLOGY.md)"
                ),
            }
        ));
    }

    // Storage.
    o.push_str(&format!("<h2>{}</h2>", ctx.t("Stockage", "Storage")));
    match &m.storage {
        None => o.push_str(&format!(
            "<p>{}</p>",
            ctx.t(
                "Pas d'analyse du stockage reçue ([storage] dans la configuration de l'agent).",
                "No storage scan received ([storage] in the agent's configuration)."
            )
        )),
        Some(st) => {
            o.push_str(&format!(
                "<p>{} {} {} {}{} ({} {}).</p>",
                count(st.files, fr),
                ctx.t("fichiers,", "files,"),
                bytes(st.bytes, fr),
                ctx.t("analysés", "scanned"),
                if st.complete {
                    ""
                } else {
                    ctx.t(
                        " — analyse interrompue, chiffres partiels",
                        " — scan stopped early, partial figures",
                    )
                },
                ctx.t("le", "on"),
                date(st.finished_at_ms),
            ));
            let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for c in &st.categories {
                let e = by.entry(&c.category).or_default();
                e.0 += c.files;
                e.1 += c.bytes;
            }
            o.push_str(&category_table(
                ctx,
                "tc",
                by.iter().map(|(c, (n, b))| (*c, *n, *b)),
            ));
        }
    }

    // Findings.
    o.push_str(&format!("<h2>{}</h2>", ctx.t("Constats", "Findings")));
    if m.findings.is_empty() {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t("Aucun constat.", "No finding.")
        ));
    }
    for f in &m.findings {
        o.push_str(&findings::card(ctx, f, None));
    }

    // Nudges.
    o.push_str(&format!(
        "<h2>{}</h2>",
        ctx.t("Messages reçus", "Nudges received")
    ));
    if m.nudges.is_empty() {
        o.push_str(&format!(
            "<p>{}</p>",
            ctx.t(
                "Aucun message envoyé à cette machine.",
                "No nudge sent to this machine."
            )
        ));
    } else {
        let rows: String = m
            .nudges
            .iter()
            .rev()
            .map(|n| {
                format!(
                    "<tr><td>{}</td><th scope=\"row\">{}</th><td>{}</td></tr>",
                    date(n.created_ms),
                    esc(&n.title),
                    match (n.delivered_ms, n.sent_ms) {
                        (Some(t), _) => format!("{} {}", ctx.t("reçu le", "received"), date(t)),
                        (None, Some(_)) => ctx
                            .t("envoyé, pas encore reçu", "sent, not received yet")
                            .into(),
                        (None, None) => ctx.t("en attente", "waiting").into(),
                    }
                )
            })
            .collect();
        o.push_str(&table(
            "tn",
            ctx.t("Les plus récents d'abord", "Newest first"),
            &[
                (ctx.t("Créé", "Created"), false),
                (ctx.t("Message", "Nudge"), false),
                (ctx.t("Remise", "Delivery"), false),
            ],
            &rows,
        ));
    }
    o
}
