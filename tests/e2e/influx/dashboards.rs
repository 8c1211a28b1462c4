//! The dashboards in `dashboards/`: their queries run as Grafana runs
//! them (variables, `$timeFilter` and `$__interval` expanded) against the
//! real InfluxDB, and their lint (datasources, variables, no empty query).

use super::server::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

pub(crate) fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 4, "four dashboards expected");
    out
}

/// Every panel, including those inside collapsed rows.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Grafana's regex formatting of a variable's value for InfluxQL.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The query as Grafana sends it: variables, `$timeFilter` and
/// `$__interval` expanded.
pub(crate) fn expand(q: &str, vars: &BTreeMap<&str, String>, from_ms: i64, to_ms: i64) -> String {
    let mut q = q
        .replace(
            "$timeFilter",
            &format!("time >= {from_ms}ms and time <= {to_ms}ms"),
        )
        .replace("$__interval", "1s");
    for (k, v) in vars {
        q = q.replace(&format!("${k}"), v);
    }
    q
}

/// Column names the outer SELECT asks for (`AS "x"` before the first
/// FROM), after `time`.
fn expected_columns(q: &str) -> Vec<String> {
    let outer = &q[..q.find(" FROM ").expect("FROM")];
    let mut cols = vec!["time".to_owned()];
    let mut rest = outer;
    while let Some(i) = rest.find("AS \"") {
        let tail = &rest[i + 4..];
        let end = tail.find('"').expect("closing quote");
        cols.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    assert!(cols.len() > 1, "every selected value has an alias: {q}");
    cols
}

/// Runs every query of every panel of `dash`, with the variables
/// `vars_for` gives for it, and checks that each returns data in the
/// expected columns, each column with a value somewhere.
pub(crate) async fn check_dashboard(
    s: &Server,
    name: &str,
    dash: &Value,
    vars_for: &dyn Fn(&str) -> BTreeMap<&'static str, String>,
    range: (i64, i64),
) -> usize {
    let mut n = 0;
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let raw = t["query"].as_str().expect("query");
            let vars = &vars_for(raw);
            let q = expand(raw, vars, range.0, range.1);
            let cols = expected_columns(&q);
            let r = s.query(&q).await;
            let series = r["series"].as_array().unwrap_or_else(|| {
                panic!(
                    "{name}: panel {:?} returned no series (vars {vars:?}):\n{q}",
                    p["title"]
                )
            });
            assert!(!series.is_empty(), "{name}: {:?} empty", p["title"]);
            for sr in series {
                let got: Vec<String> = sr["columns"]
                    .as_array()
                    .expect("columns")
                    .iter()
                    .map(|c| c.as_str().unwrap_or("").to_owned())
                    .collect();
                assert_eq!(got, cols, "{name}: panel {:?}:\n{q}", p["title"]);
            }
            let rows: Vec<&Value> = series
                .iter()
                .flat_map(|sr| sr["values"].as_array().into_iter().flatten())
                .collect();
            for (i, c) in cols.iter().enumerate().skip(1) {
                assert!(
                    rows.iter().any(|row| !row[i].is_null()),
                    "{name}: panel {:?}: column {c} has no value:\n{q}\n{r}",
                    p["title"]
                );
            }
            n += 1;
        }
    }
    n
}

/// Every panel's datasource is the provisioned one, every variable used is
/// defined, no panel query is empty.
#[test]
fn dashboards_lint() {
    let prov = repo().join("dashboards/provisioning");
    let mut uids = BTreeSet::new();
    for e in std::fs::read_dir(prov.join("datasources")).expect("provisioning/datasources") {
        let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
        for line in text.lines() {
            if let Some(uid) = line.trim().strip_prefix("uid:") {
                uids.insert(uid.trim().trim_matches(['"', '\'']).to_owned());
            }
        }
    }
    assert!(!uids.is_empty(), "a datasource with a uid is provisioned");
    let providers = std::fs::read_dir(prov.join("dashboards"))
        .expect("provisioning/dashboards")
        .count();
    assert!(providers >= 1, "a dashboard provider is provisioned");

    let builtin = [
        "timeFilter",
        "__interval",
        "__interval_ms",
        "__timeFilter",
        "__from",
        "__to",
        "__range",
        "__all",
    ];
    let mut seen_uids = BTreeSet::new();
    for (name, d) in dashboards() {
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{name}: current schemaVersion"
        );
        assert!(
            seen_uids.insert(d["uid"].as_str().expect("uid").to_owned()),
            "{name}: duplicate uid"
        );
        let defined: BTreeSet<String> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].as_str().expect("variable name").to_owned())
            .collect();
        let check_vars = |what: &str, text: &str| {
            let mut rest = text;
            while let Some(i) = rest.find('$') {
                let tail = &rest[i + 1..];
                let tail = tail.strip_prefix('{').unwrap_or(tail);
                let var: String = tail
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &tail[var.len()..];
                if var.is_empty() || var.starts_with("tag_") || builtin.contains(&var.as_str()) {
                    continue;
                }
                assert!(
                    defined.contains(&var),
                    "{name}: {what} uses ${var}, which is not a variable of the dashboard"
                );
            }
        };
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            assert!(
                uids.contains(v["datasource"]["uid"].as_str().unwrap_or("")),
                "{name}: variable {} uses an unprovisioned datasource",
                v["name"]
            );
            check_vars("a variable", v["query"].as_str().unwrap_or(""));
        }
        let ps = panels(&d);
        assert!(!ps.is_empty(), "{name}: no panel");
        for p in ps {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            match p["type"].as_str() {
                Some("row") => continue,
                Some("text") => {
                    assert!(
                        !p["options"]["content"].as_str().unwrap_or("").is_empty(),
                        "{name}: empty text panel {title}"
                    );
                    continue;
                }
                _ => {}
            }
            assert!(
                uids.contains(p["datasource"]["uid"].as_str().unwrap_or("")),
                "{name}: panel {title:?} has no provisioned datasource uid"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: panel {title:?} has no query");
            for t in targets {
                let q = t["query"].as_str().unwrap_or("").trim();
                assert!(!q.is_empty(), "{name}: panel {title:?} has an empty query");
                assert!(
                    uids.contains(t["datasource"]["uid"].as_str().unwrap_or("")),
                    "{name}: a query of {title:?} has no provisioned datasource uid"
                );
                check_vars(&format!("panel {title:?}"), q);
                check_vars(
                    &format!("panel {title:?}"),
                    t["alias"].as_str().unwrap_or(""),
                );
                expected_columns(q);
            }
        }
    }
}
