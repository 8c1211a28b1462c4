//! The printable campaign report: one self-contained HTML page (inline
//! CSS and SVG, no script, no font, no third-party request), readable on a
//! phone, printable, in French or English.

use super::report::{HostIssue, Report};
pub use crate::console::fmt::date;
use crate::console::fmt::{bytes, count, esc, kg};

/// A line chart of bytes deleted over time, with its numbers in words for
/// screen readers (the table below it says the same).
fn chart(r: &Report, fr: bool) -> String {
    let pts = &r.over_time;
    if pts.len() < 2 {
        return String::new();
    }
    let (w, h) = (600.0, 200.0);
    let t0 = pts[0].at_ms as f64;
    let span = ((pts[pts.len() - 1].at_ms as f64) - t0).max(1.0);
    let max = pts
        .iter()
        .map(|p| p.bytes_deleted)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let path: Vec<String> = pts
        .iter()
        .map(|p| {
            let x = (p.at_ms as f64 - t0) / span * (w - 20.0) + 10.0;
            let y = h - 10.0 - p.bytes_deleted as f64 / max * (h - 30.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let label = if fr {
        format!(
            "Octets supprimés au fil de la campagne, de 0 à {}",
            bytes(max as u64, fr)
        )
    } else {
        format!(
            "Bytes deleted over the campaign, from 0 to {}",
            bytes(max as u64, fr)
        )
    };
    format!(
        r##"<figure><svg viewBox="0 0 {w} {h}" role="img" aria-label="{l}"><polyline fill="none" stroke="#1b5e20" stroke-width="3" points="{p}"/><line x1="10" y1="{b}" x2="{r}" y2="{b}" stroke="#555"/></svg><figcaption>{l}</figcaption></figure>"##,
        l = esc(&label),
        p = path.join(" "),
        b = h - 10.0,
        r = w - 10.0,
    )
}

fn issues_list(list: &[HostIssue]) -> String {
    let mut o = String::from("<ul>");
    for i in list {
        o.push_str(&format!(
            "<li><strong>{}</strong>{} — {}</li>",
            esc(i.hostname.as_deref().unwrap_or(&i.agent_id)),
            if i.group.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&i.group))
            },
            esc(&i.issue)
        ));
    }
    o.push_str("</ul>");
    o
}

const CSS: &str = "body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;\
max-width:60rem;margin:0 auto;padding:1rem}h1{font-size:1.6rem;margin:.2rem 0}\
h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
.kpi{display:flex;flex-wrap:wrap;gap:1rem;padding:0;list-style:none}\
.kpi li{flex:1 1 12rem;border:1px solid #bbb;border-radius:.4rem;padding:.6rem}\
.kpi strong{display:block;font-size:1.5rem;color:#1b5e20}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}\
td.n,th.n{text-align:right}.wrap{overflow-x:auto}.wrap:focus{outline:2px solid #1b5e20}svg{width:100%;height:auto}\
figcaption,.note{color:#444;font-size:.9rem}\
@media print{body{max-width:none}.kpi li{break-inside:avoid}}";

/// The whole page.
pub fn render(r: &Report, lang: &str) -> String {
    let fr = lang == "fr";
    let t = |f: &'static str, e: &'static str| if fr { f } else { e };
    let c = &r.campaign;
    let mut o = String::with_capacity(16 * 1024);
    o.push_str(&format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — {}</title><style>{CSS}</style></head><body><main>",
        if fr { "fr" } else { "en" },
        esc(&c.name),
        t("bilan", "report")
    ));
    let state = match (c.state, fr) {
        (super::State::Planned, true) => "à venir",
        (super::State::Running, true) => "en cours",
        (super::State::Ended, true) => "terminée",
        (super::State::Archived, true) => "archivée",
        (s, false) => s.as_str(),
    };
    o.push_str(&format!(
        "<h1>{}</h1><p>{} {} {} {} · {} {}{}</p>",
        esc(&c.name),
        t("Du", "From"),
        date(c.starts_at_ms),
        t("au", "to"),
        date(c.ends_at_ms),
        t("campagne", "campaign"),
        state,
        if r.complete {
            ""
        } else {
            t(
                " · chiffres provisoires, mis à jour à chaque comptage",
                " · provisional figures, updated at every count",
            )
        }
    ));
    o.push_str(&format!(
        "<ul class=\"kpi\"><li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li>\
         <li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li></ul>",
        bytes(r.totals.bytes_deleted, fr),
        t("supprimés", "deleted"),
        count(r.totals.files_deleted, fr),
        t("fichiers supprimés", "files deleted"),
        count(r.participants as u64, fr),
        t("postes participants", "participating hosts"),
        kg(r.co2e.kg_per_year, fr),
        t(
            "CO2e évités par an (voir ci-dessous)",
            "CO2e avoided per year (see below)"
        ),
    ));
    o.push_str(&format!(
        "<p>{} {} {} {}, {} {}.</p>",
        count(r.hosts_in_scope as u64, fr),
        t("postes concernés, dont", "hosts in scope, of which"),
        count(r.hosts_with_baseline as u64, fr),
        t("ont un état initial", "have a baseline"),
        count(r.totals.files_moved, fr),
        t(
            "fichiers déplacés (non comptés comme supprimés)",
            "files moved (not counted as deleted)"
        ),
    ));
    o.push_str(&chart(r, fr));

    o.push_str(&format!(
        "<h2>{}</h2><div class=\"wrap\" tabindex=\"0\" role=\"region\" aria-labelledby=\"t1\"><table><caption id=\"t1\">{}</caption><thead><tr><th scope=\"col\">{}</th>\
         <th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th></tr></thead><tbody>",
        t("Par catégorie", "By category"),
        t(
            "Ce qu'étaient les fichiers supprimés à l'état initial",
            "What the deleted files were at the baseline"
        ),
        t("Catégorie", "Category"),
        t("Fichiers", "Files"),
        t("Volume", "Size"),
    ));
    for row in &r.by_category {
        o.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&row.category),
            count(row.files, fr),
            bytes(row.bytes, fr)
        ));
    }
    o.push_str("</tbody></table></div>");

    o.push_str(&format!(
        "<h2>{}</h2><div class=\"wrap\" tabindex=\"0\" role=\"region\" aria-labelledby=\"t2\"><table><caption id=\"t2\">{}</caption><thead><tr><th scope=\"col\">{}</th>\
         <th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th>\
         <th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th></tr></thead><tbody>",
        t("Par service", "By department"),
        t("Groupes des postes, tels que configurés sur les agents", "Host groups, as configured on the agents"),
        t("Groupe", "Group"),
        t("Postes", "Hosts"),
        t("Participants", "Participants"),
        t("Fichiers", "Files"),
        t("Volume", "Size"),
    ));
    for g in &r.by_group {
        o.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if g.group.is_empty() {
                t("(sans groupe)", "(no group)").to_owned()
            } else {
                esc(&g.group)
            },
            count(g.hosts as u64, fr),
            count(g.participants as u64, fr),
            count(g.files_deleted, fr),
            bytes(g.bytes_deleted, fr)
        ));
    }
    o.push_str("</tbody></table></div>");

    o.push_str(&format!(
        "<h2>{}</h2><p>{} <strong>{}</strong> ({}) : {} {} {}.</p>\
         <p class=\"note\">{}</p><div class=\"wrap\" tabindex=\"0\" role=\"region\" aria-labelledby=\"t3\"><table><caption id=\"t3\">{}</caption><thead><tr>\
         <th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th>\
         <th scope=\"col\">{}</th></tr></thead><tbody>",
        t("Émissions évitées : une estimation", "Emissions avoided: an estimate"),
        t("Facteur retenu :", "Chosen factor:"),
        esc(r.co2e.factor.label),
        esc(r.co2e.factor.source),
        kg(r.co2e.factor.kg_per_gb_year, fr),
        t("CO2e par Go et par an, soit", "CO2e per GB per year, so"),
        kg(r.co2e.kg_per_year, fr),
        t(
            "Les facteurs publiés diffèrent de plus de 1 000 fois selon ce qu'ils comptent \
             (électricité seule ou centre de données entier, réseau électrique, réplication). \
             Supprimer des fichiers ne réduit ces émissions que si l'on achète ou alimente moins \
             de stockage grâce à la place libérée.",
            "Published factors differ by more than 1,000 times depending on what they count \
             (electricity only or a whole data centre, the grid, replication). Deleting files \
             only avoids these emissions if the space freed means less storage is bought or powered."
        ),
        t("Les mêmes octets avec chaque facteur publié", "The same bytes under each published factor"),
        t("Facteur", "Factor"),
        t("par Go·an", "per GB·year"),
        t("évité par an", "avoided per year"),
        t("Source", "Source"),
    ));
    for (f, v) in &r.co2e.range {
        o.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}<br><span class=\"note\">{}</span></td></tr>",
            esc(f.label),
            kg(f.kg_per_gb_year, fr),
            kg(*v, fr),
            esc(f.source),
            esc(&f.note)
        ));
    }
    o.push_str("</tbody></table></div>");

    if !r.hosts_without_baseline.is_empty() || !r.hosts_with_issues.is_empty() {
        o.push_str(&format!(
            "<h2>{}</h2><p>{}</p>",
            t("Postes non comptés", "Hosts not counted"),
            t(
                "Sans état initial, un poste ne peut rien compter : ses suppressions ne figurent pas ici.",
                "Without a baseline a host cannot count: its deletions are not in this report."
            )
        ));
        o.push_str(&issues_list(&r.hosts_without_baseline));
        o.push_str(&issues_list(&r.hosts_with_issues));
    }
    o.push_str(&format!(
        "<h2>{}</h2><p class=\"note\">{}</p><p class=\"note\">{} {}.</p></main></body></html>",
        t("Méthode", "Method"),
        t(
            "Chaque poste compare l'index de ses fichiers à l'état pris au début de la campagne : \
             un fichier présent alors et absent aujourd'hui est supprimé ; un fichier déplacé ou \
             renommé ne l'est pas ; les fichiers ajoutés ne compensent pas les suppressions ; un \
             fichier à la corbeille n'est compté qu'une fois la corbeille vidée. Aucun nom de \
             fichier ne quitte les postes : seuls les totaux sont transmis.",
            "Each host compares the index of its files with the baseline taken at the start of \
             the campaign: a file present then and gone now is deleted; a moved or renamed file is \
             not; new files do not offset deletions; a file in the trash counts once the trash is \
             emptied. No file name leaves the hosts: only totals are sent."
        ),
        t("Généré par Sobre le", "Generated by Sobre on"),
        date(r.generated_at_ms),
    ));
    o
}
