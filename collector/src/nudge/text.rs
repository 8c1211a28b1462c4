//! Nudge texts, in French (default) and English: plain words, one concrete
//! action, the impact in numbers people grasp. Every number in a text
//! comes from the finding.

use crate::detect::{Finding, Kind};

/// Title, body and action of a nudge.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub title: String,
    pub body: String,
    pub action: String,
}

/// "1,5" in French, "1.5" in English, with one decimal below 10.
pub(crate) fn num(v: f64, lang: &str) -> String {
    let s = if v.abs() < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    if lang == "fr" { s.replace('.', ",") } else { s }
}

/// Bytes as GB (10⁹), the unit file managers show.
pub(crate) fn gb(bytes: u64, lang: &str) -> String {
    let v = bytes as f64 / 1e9;
    format!(
        "{} {}",
        num(v, lang),
        if lang == "fr" { "Go" } else { "GB" }
    )
}

/// The text for a finding, or `None` for kinds that are not for the
/// person at the machine (consolidation, redundancy: for ops teams).
pub fn render(f: &Finding, lang: &str) -> Option<Text> {
    let fr = lang == "fr";
    let kwh = f.saving_kwh_year.unwrap_or(0.0);
    let kg = f.saving_kg_year.unwrap_or(0.0);
    Some(match f.kind {
        Kind::LeftOn => {
            let hours = f.evidence["wasted_hours"].as_u64().unwrap_or(0);
            if fr {
                Text {
                    title: "Votre ordinateur reste allumé quand personne ne l'utilise".into(),
                    body: format!(
                        "Cette semaine, il est resté allumé {hours} heures le soir, la nuit ou le week-end sans être utilisé. L'éteindre en partant économiserait environ {} kWh et {} kg de CO2e par an.",
                        num(kwh, lang),
                        num(kg, lang)
                    ),
                    action:
                        "Éteignez-le (ou mettez-le en veille) en partant le soir et le vendredi."
                            .into(),
                }
            } else {
                Text {
                    title: "Your computer stays on when nobody uses it".into(),
                    body: format!(
                        "This week it stayed on for {hours} hours in the evening, at night or at the weekend without being used. Switching it off when you leave would save about {} kWh and {} kg CO2e a year.",
                        num(kwh, lang),
                        num(kg, lang)
                    ),
                    action: "Shut it down (or put it to sleep) when you leave in the evening and on Fridays.".into(),
                }
            }
        }
        Kind::Bloat => {
            let bytes = f.saving_bytes.unwrap_or(0);
            let top = f.evidence["categories"][0]["category"]
                .as_str()
                .unwrap_or("");
            let top_bytes = f.evidence["categories"][0]["bytes"].as_u64().unwrap_or(0);
            let top_name = category_name(top, fr);
            if fr {
                Text {
                    title: format!("Vous pouvez libérer {} sur ce poste", gb(bytes, lang)),
                    body: format!(
                        "Dont {} de {top_name}. Moins de données stockées, c'est moins de disques, de sauvegardes et d'énergie.",
                        gb(top_bytes, lang)
                    ),
                    action: "Lancez « sobre-agent cleanup » pour les revoir : rien n'est supprimé sans votre accord, tout passe par la corbeille.".into(),
                }
            } else {
                Text {
                    title: format!("You can free {} on this computer", gb(bytes, lang)),
                    body: format!(
                        "Including {} of {top_name}. Less stored data means fewer disks, backups and less energy.",
                        gb(top_bytes, lang)
                    ),
                    action: "Run \"sobre-agent cleanup\" to review them: nothing is deleted without your say, everything goes to the trash first.".into(),
                }
            }
        }
        Kind::BatteryWorn => {
            let health = f.evidence["health"].as_f64().unwrap_or(0.0) * 100.0;
            if fr {
                Text {
                    title: format!(
                        "La batterie de votre portable ne tient plus que {} % de sa charge d'origine",
                        num(health, lang)
                    ),
                    body: format!(
                        "Une batterie neuve coûte bien moins que l'ordinateur : garder ce portable un an de plus évite {} kg de CO2e de fabrication.",
                        num(kg, lang)
                    ),
                    action: "Demandez au support informatique le remplacement de la batterie."
                        .into(),
                }
            } else {
                Text {
                    title: format!(
                        "Your laptop's battery holds only {} % of its original charge",
                        num(health, lang)
                    ),
                    body: format!(
                        "A new battery costs far less than the computer: keeping this laptop one more year avoids {} kg CO2e of manufacturing.",
                        num(kg, lang)
                    ),
                    action: "Ask the IT support desk for a battery replacement.".into(),
                }
            }
        }
        Kind::PastLifetime => {
            if fr {
                Text {
                    title: "Votre ordinateur a dépassé sa durée de vie prévue et fonctionne toujours".into(),
                    body: format!(
                        "Merci d'en prendre soin : le garder un an de plus évite {} kg de CO2e de fabrication.",
                        num(kg, lang)
                    ),
                    action: "Signalez une lenteur au support avant de demander un remplacement : souvent, un nettoyage ou plus de mémoire suffit.".into(),
                }
            } else {
                Text {
                    title: "Your computer is past its planned lifetime and still works".into(),
                    body: format!(
                        "Thank you for looking after it: keeping it one more year avoids {} kg CO2e of manufacturing.",
                        num(kg, lang)
                    ),
                    action: "Report slowness to support before asking for a replacement: a clean-up or more memory often does it.".into(),
                }
            }
        }
        Kind::IdleServer | Kind::Consolidation | Kind::Redundant => return None,
    })
}

fn category_name(c: &str, fr: bool) -> &'static str {
    match (c, fr) {
        ("duplicates", true) => "doublons",
        ("duplicates", false) => "duplicates",
        ("cold", true) => "fichiers inutilisés depuis des années",
        ("cold", false) => "files unused for years",
        ("temp", true) => "fichiers temporaires",
        ("temp", false) => "temporary files",
        ("trash", true) => "corbeille",
        ("trash", false) => "trash",
        ("old_downloads", true) => "vieux téléchargements",
        ("old_downloads", false) => "old downloads",
        (_, true) => "fichiers à revoir",
        (_, false) => "files to review",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(kind: Kind, evidence: serde_json::Value) -> Finding {
        let mut f = Finding::new(kind, Some("pc"), "pc", evidence);
        f.saving_kwh_year = Some(41.6);
        f.saving_kg_year = Some(2.3296);
        f.saving_bytes = Some(12_400_000_000);
        f
    }

    #[test]
    fn left_on_texts_carry_their_numbers() {
        let f = finding(Kind::LeftOn, json!({"wasted_hours": 80}));
        let fr = render(&f, "fr").expect("fr");
        assert!(
            fr.body.contains("80 heures")
                && fr.body.contains("42 kWh")
                && fr.body.contains("2,3 kg"),
            "{}",
            fr.body
        );
        let en = render(&f, "en").expect("en");
        assert!(
            en.body.contains("80 hours")
                && en.body.contains("42 kWh")
                && en.body.contains("2.3 kg"),
            "{}",
            en.body
        );
        assert!(!fr.action.is_empty() && !en.action.is_empty());
    }

    #[test]
    fn bloat_texts_carry_their_numbers() {
        let f = finding(
            Kind::Bloat,
            json!({"categories": [{"category": "duplicates", "bytes": 9_100_000_000u64}]}),
        );
        let fr = render(&f, "fr").expect("fr");
        assert!(fr.title.contains("12 Go"), "{}", fr.title);
        assert!(fr.body.contains("9,1 Go de doublons"), "{}", fr.body);
        assert!(fr.action.contains("sobre-agent cleanup"));
        let en = render(&f, "en").expect("en");
        assert!(
            en.title.contains("12 GB") && en.body.contains("9.1 GB of duplicates"),
            "{en:?}"
        );
    }

    #[test]
    fn battery_and_lifetime_texts_carry_their_numbers() {
        let f = finding(Kind::BatteryWorn, json!({"health": 0.55}));
        assert!(render(&f, "fr").expect("fr").title.contains("55 %"));
        assert!(render(&f, "en").expect("en").body.contains("2.3 kg"));
        let f = finding(Kind::PastLifetime, json!({}));
        assert!(render(&f, "fr").expect("fr").body.contains("2,3 kg"));
    }

    #[test]
    fn ops_findings_are_not_nudges() {
        assert!(render(&finding(Kind::IdleServer, json!({})), "fr").is_none());
        assert!(render(&finding(Kind::Consolidation, json!({})), "en").is_none());
    }
}
