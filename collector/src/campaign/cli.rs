//! `sobre-collector campaign ...`: the lifecycle and the report from the
//! command line, on the store in `data_dir` (works while the collector
//! runs: the running collector sends the commands on its next dispatch
//! pass, within `nudge.dispatch_interval_s`).

use super::report::csv;
use super::{CampaignError, NewCampaign, Scope, State, html};
use crate::jobs::Jobs;
use crate::store::campaigns as db;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CampaignCmd {
    /// Plan a campaign. It starts by itself at --starts (or with `start`)
    /// and ends at --ends (or with `end`).
    ///
    /// Example: campaign create --id cud-2026 --name "Digital Clean Up Day"
    ///   --starts 2027-03-20 --ends 2027-03-21T18:00 --group dsi --group rh
    #[command(verbatim_doc_comment)]
    Create {
        /// Short id for URLs and the agents: letters, digits, . _ -
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Start, UTC: YYYY-MM-DD, YYYY-MM-DDTHH:MM, or milliseconds since 1970.
        #[arg(long)]
        starts: String,
        /// End, same forms as --starts.
        #[arg(long)]
        ends: String,
        /// Only hosts of this group (agent config `group`); repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Only hosts of this site (agent config `site`); repeatable.
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Only this host (agent id or hostname); repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// CO2e factor the report shows: ccf-hdd, ccf-ssd, vendor-2021,
        /// cloud-2017 (the report shows all of them beside it).
        #[arg(long, default_value = super::factors::DEFAULT)]
        factor: String,
        /// Minutes between two counts on each host during the campaign.
        #[arg(long, default_value_t = 60)]
        rescan_minutes: u32,
    },
    /// List campaigns, newest first.
    List,
    /// Start a planned campaign now: hosts in scope take their baseline.
    Start { id: String },
    /// End a running campaign now: hosts send their final count.
    End { id: String },
    /// Archive an ended campaign: nothing is sent any more.
    Archive { id: String },
    /// Print (or write) a campaign's report.
    Report {
        id: String,
        /// json, csv or html (a printable page to publish).
        #[arg(long, default_value = "json")]
        format: String,
        /// Language of the html page: fr or en.
        #[arg(long, default_value = "fr")]
        lang: String,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC, an optional trailing `Z`)
/// or milliseconds since 1970.
pub fn parse_time(s: &str) -> Result<i64, CampaignError> {
    let bad = || {
        CampaignError::Invalid(format!(
            "{s:?} is not a date: use YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or milliseconds since 1970"
        ))
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let s2 = s.trim_end_matches('Z');
    let (date, time) = s2.split_once(['T', ' ']).unwrap_or((s2, "00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&t.len()) {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, min) = (num(t[0])?, num(t[1])?);
    let sec = if t.len() == 3 { num(t[2])? } else { 0 };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    let days = crate::footprint::grid::days_from_civil(y, m as u32, day as u32);
    Ok(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000)
}

/// Runs one campaign command; `jobs` wraps the store.
pub fn run(jobs: &Jobs, cmd: CampaignCmd, now_ms: i64) -> Result<(), CampaignError> {
    match cmd {
        CampaignCmd::Create {
            id,
            name,
            starts,
            ends,
            groups,
            sites,
            hosts,
            factor,
            rescan_minutes,
        } => {
            let new = NewCampaign {
                id,
                name,
                starts_at_ms: parse_time(&starts)?,
                ends_at_ms: parse_time(&ends)?,
                scope: Scope {
                    groups,
                    sites,
                    hosts,
                },
                factor,
                rescan_interval_s: rescan_minutes.saturating_mul(60),
            };
            let c = jobs.with_campaigns(|conn| db::create(conn, &new, now_ms))?;
            println!(
                "campaign {} planned: {} to {}; scope {}",
                c.id,
                html::date(c.starts_at_ms),
                html::date(c.ends_at_ms),
                if c.scope.is_everyone() {
                    "every host".to_owned()
                } else {
                    serde_json::to_string(&c.scope).unwrap_or_default()
                }
            );
        }
        CampaignCmd::List => {
            for c in jobs.with_campaigns(|conn| Ok(db::list(conn)?))? {
                println!(
                    "{:<24} {:<9} {} → {}  {}",
                    c.id,
                    c.state.as_str(),
                    html::date(c.starts_at_ms),
                    html::date(c.ends_at_ms),
                    c.name
                );
            }
        }
        CampaignCmd::Start { id } => transition(jobs, &id, State::Running, now_ms)?,
        CampaignCmd::End { id } => transition(jobs, &id, State::Ended, now_ms)?,
        CampaignCmd::Archive { id } => transition(jobs, &id, State::Archived, now_ms)?,
        CampaignCmd::Report {
            id,
            format,
            lang,
            output,
        } => {
            if lang != "fr" && lang != "en" {
                return Err(CampaignError::Invalid(format!(
                    "--lang {lang:?}: use fr or en"
                )));
            }
            let r = jobs.campaign_report(&id, now_ms)?;
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(&r).unwrap_or_default(),
                "csv" => csv(&r),
                "html" => html::render(&r, &lang),
                other => {
                    return Err(CampaignError::Invalid(format!(
                        "--format {other:?}: use json, csv or html"
                    )));
                }
            };
            match output {
                Some(path) => std::fs::write(&path, text).map_err(|e| {
                    CampaignError::Invalid(format!("cannot write {}: {e}", path.display()))
                })?,
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}

fn transition(jobs: &Jobs, id: &str, to: State, now_ms: i64) -> Result<(), CampaignError> {
    let c = jobs.with_campaigns(|conn| db::transition(conn, id, to, now_ms))?;
    println!(
        "campaign {} is {}; a running collector sends what follows within its dispatch interval",
        c.id,
        c.state.as_str()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_or_milliseconds() {
        assert_eq!(parse_time("2025-01-01").ok(), Some(1_735_689_600_000));
        assert_eq!(
            parse_time("2025-01-01T01:02").ok(),
            Some(1_735_689_600_000 + 3_720_000)
        );
        assert_eq!(
            parse_time("2025-01-01T00:00:05Z").ok(),
            Some(1_735_689_605_000)
        );
        assert_eq!(parse_time("123").ok(), Some(123));
        for bad in ["2025-13-01", "tomorrow", "2025-01-01T25:00", "2025-01"] {
            let e = parse_time(bad).expect_err(bad).to_string();
            assert!(e.contains("YYYY-MM-DD"), "{e}");
        }
    }
}
