//! The InfluxDB sink and the Grafana dashboards against real servers:
//! Debian's InfluxDB 1.6 (`/write`, InfluxQL `/query`) and VictoriaMetrics
//! (`/api/v2/write`, export API), each started here (`server`), with real
//! agents streaming through a real collector, one of them taking part in a
//! Clean Up Day campaign (`cleanup`). The dashboards' queries and lint:
//! `dashboards`.

pub(crate) mod cleanup;
pub(crate) mod dashboards;
pub(crate) mod server;

use dashboards::{check_dashboard, dashboards, expand, regex_escape};
use server::{DB, Server};

use crate::PATIENCE;
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use sobre_proto::topics;
use sobre_proto::v1::{
    CategoryTotal, Envelope, Inventory, PowerSource, StorageSummary, UsageReport, envelope::Body,
};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn sink_toml(api: &str, port: u16, extra: &str) -> String {
    format!(
        "[sink]\nenabled = true\napi = \"{api}\"\nurl = \"http://127.0.0.1:{port}\"\ndb = \"{DB}\"\nbucket = \"{DB}\"\n\
         flush_interval_ms = 100\nretry_min_ms = 100\nretry_max_ms = 1000\nsnapshot_interval_ms = 1000\n{extra}\n"
    )
}

pub(crate) fn labelled(id: &str, group: &str, site: &str) -> AgentOpts {
    let mut o = AgentOpts::new(id, Transport::Mqtt);
    o.interval_ms = 100;
    o.extra_toml = format!("group = \"{group}\"\nsite = \"{site}\"\n");
    o
}

/// Publishes `bodies` (each with its `sent_at_ms`) over MQTT as agent
/// `id` would, in order, QoS 1.
async fn publish_as(mqtt_port: u16, id: &str, bodies: Vec<(i64, Body)>) {
    let mut opts = MqttOptions::new(format!("{id}-test"), "127.0.0.1", mqtt_port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    for (i, (sent_at_ms, body)) in bodies.into_iter().enumerate() {
        let env = Envelope {
            mac: Vec::new(),
            agent_id: id.into(),
            seq: i as u64 + 1,
            sent_at_ms,
            version: 1,
            // Everything is held until acked, as a spool would.
            spool_floor: 1,
            footprint: None,
            body: Some(body),
        };
        client
            .publish(topics::up(id), QoS::AtLeastOnce, false, env.encode_to_vec())
            .await
            .expect("publish");
    }
}

/// A host that only reports a storage scan (no agent on this machine
/// scans yet), over MQTT as an agent would.
pub(crate) async fn storage_host(mqtt_port: u16, id: &str) {
    let now = sobre_tests::now_ms();
    let cat = |category: &str, age: &str, files, bytes| CategoryTotal {
        category: category.into(),
        age: age.into(),
        files,
        bytes,
    };
    let bodies = [
        Body::Inventory(Inventory {
            hostname: id.into(),
            chassis: "server".into(),
            group: "dsi".into(),
            site: "hdv".into(),
            bios_date: "01/15/2017".into(),
            ..Default::default()
        }),
        Body::Storage(StorageSummary {
            started_at_ms: now - 60_000,
            finished_at_ms: now,
            roots: 1,
            files: 1000,
            bytes: 50 << 30,
            dirs: 100,
            complete: true,
            categories: vec![
                cat("duplicates", "1-2y", 40, 3 << 30),
                cat("cold", ">5y", 300, 12 << 30),
                cat("cold", "2-5y", 100, 2 << 30),
                cat("temp", "<1y", 50, 1 << 30),
                cat("large", "<1y", 5, 20 << 30),
            ],
            ..Default::default()
        }),
    ];
    publish_as(mqtt_port, id, bodies.map(|b| (now, b)).into()).await;
}

/// The history a host that stayed on, unused, for `hours` would have
/// sent: its inventory, then one hourly report per hour up to now (the
/// detectors judge days and off-hours from such a history). Returns the
/// number of usage reports.
pub(crate) async fn quiet_history(mqtt_port: u16, id: &str, chassis: &str, hours: i64) -> usize {
    const HOUR: i64 = 3_600_000;
    let now_hour = sobre_tests::now_ms() / HOUR * HOUR;
    let inv = Inventory {
        hostname: id.into(),
        chassis: chassis.into(),
        cpu_threads: 4,
        mem_total_bytes: 8 << 30,
        ..Default::default()
    };
    let mut bodies = vec![(now_hour - hours * HOUR, Body::Inventory(inv))];
    for i in 0..hours {
        let report = UsageReport {
            interval_ms: HOUR as u32,
            cpu_percent: 2.0,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 6 << 30,
            // 10 W all along.
            power_w: 10.0,
            energy_j: 36_000.0,
            power_source: PowerSource::Model as i32,
            ..Default::default()
        };
        bodies.push((now_hour - (hours - 1 - i) * HOUR, Body::Usage(report)));
    }
    publish_as(mqtt_port, id, bodies).await;
    hours as usize
}

async fn metric(c: &Collector, name: &str) -> u64 {
    c.metric(name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_receives_the_agents_data_and_answers_every_dashboard_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let influx = Server::influxdb(&dir.path().join("influx")).await;
    let start_ms = sobre_tests::now_ms();
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: format!(
                "{}{}",
                sink_toml("v1", influx.port, ""),
                cleanup::NUDGE_TOML
            ),
            ..Default::default()
        },
    )
    .await;
    // mairie-pc-1 scans a tiny tree and takes part in the campaign;
    // ecole-pc-1, in scope too, does not scan (so has no baseline).
    let tree = cleanup::tiny_tree(&dir.path().join("tree"));
    let mut opts = labelled("mairie-pc-1", "mairie", "hdv");
    opts.storage_toml = Some(cleanup::storage_toml(&dir.path().join("tree")));
    let a = Agent::start(&dir.path().join("a1"), &opts, c.mqtt, c.grpc);
    let b = Agent::start(
        &dir.path().join("a2"),
        &labelled("ecole-pc-1", "ecoles", "jaures"),
        c.mqtt,
        c.grpc,
    );
    storage_host(c.mqtt, "nas-1").await;
    // Histories the detectors find an idle server and a machine left on
    // in (15 days of a server at 2 % CPU; a week of a desktop nobody
    // uses, on at night).
    let idle = quiet_history(c.mqtt, "idle-srv-1", "server", 15 * 24).await;
    let left_on = quiet_history(c.mqtt, "left-on-pc-1", "desktop", 7 * 24).await;
    c.wait_samples("idle-srv-1", idle, PATIENCE).await;
    c.wait_samples("left-on-pc-1", left_on, PATIENCE).await;
    let r = c.post_admin("/api/v1/detect", None).await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "detect: {status}: {body}");
    // A campaign from start to final count: one file deleted.
    let (victim, victim_bytes) = tree[1].clone();
    let final_report = cleanup::run(&c, &["mairie", "ecoles"], &victim).await;
    let totals = &final_report["totals"];
    assert_eq!(totals["files_deleted"], 1, "{final_report}");
    assert_eq!(totals["bytes_deleted"], victim_bytes, "{final_report}");
    assert_eq!(final_report["hosts_in_scope"], 2, "{final_report}");
    for id in [&a.id, &b.id] {
        c.wait_samples(id, 20, PATIENCE).await;
    }
    // Usage of both agents, and snapshots with the hosts' lifetime and
    // the storage scan, in the server.
    wait_for(
        "usage, host, storage and finding points in InfluxDB",
        PATIENCE,
        || async {
            let mut ok = true;
            for q in [
                "SELECT count(\"seq\") FROM \"usage\" WHERE \"agent\" = 'mairie-pc-1'",
                "SELECT count(\"seq\") FROM \"usage\" WHERE \"agent\" = 'ecole-pc-1'",
                "SELECT count(\"age_years\") FROM \"host\" WHERE \"agent\" = 'ecole-pc-1'",
                "SELECT count(\"age_years\") FROM \"host\" WHERE \"agent\" = 'nas-1'",
                "SELECT count(\"bytes\") FROM \"storage\" WHERE \"category\" = 'cold'",
                "SELECT count(\"redundant_bytes\") FROM \"storage_fleet\"",
                "SELECT count(\"active\") FROM \"finding\" WHERE \"kind\" = 'idle_server'",
                "SELECT count(\"active\") FROM \"finding\" WHERE \"kind\" = 'left_on'",
            ] {
                let r = influx.query(q).await;
                ok &= r["series"][0]["values"][0][1].as_u64().unwrap_or(0) >= 2;
            }
            ok.then_some(())
        },
    )
    .await;
    // The campaign's final count, per group, as the report has it.
    let campaign_point = |group: &'static str| {
        let influx = &influx;
        async move {
            let r = influx
                .query(&format!(
                    "SELECT last(\"files_deleted\") AS \"f\", last(\"bytes_deleted\") AS \"b\", \
                     last(\"participants\") AS \"p\", last(\"hosts\") AS \"h\", \
                     last(\"hosts_with_baseline\") AS \"hb\" FROM \"campaign\" \
                     WHERE \"campaign\" = '{}' AND \"group\" = '{group}'",
                    cleanup::ID
                ))
                .await;
            let v = &r["series"][0]["values"][0];
            (1..=5).map(|i| v[i].as_u64()).collect::<Option<Vec<u64>>>()
        }
    };
    wait_for("the final campaign count in InfluxDB", PATIENCE, || async {
        (campaign_point("mairie").await == Some(vec![1, victim_bytes, 1, 1, 1])).then_some(())
    })
    .await;
    assert_eq!(
        campaign_point("ecoles").await,
        Some(vec![0, 0, 0, 1, 0]),
        "a host in scope without a baseline"
    );

    // What landed is what the agents sent: tags from their labels,
    // energy and CO2e on every point.
    let r = influx
        .query("SELECT last(\"power_w\") AS \"p\", last(\"co2e_g\") AS \"g\" FROM \"usage\" GROUP BY \"agent\", \"group\", \"site\", \"source\"")
        .await;
    let series = r["series"].as_array().expect("series");
    let tags: BTreeSet<(String, String, String)> = series
        .iter()
        .map(|s| {
            let t = &s["tags"];
            (
                t["agent"].as_str().unwrap_or("").to_owned(),
                t["group"].as_str().unwrap_or("").to_owned(),
                t["site"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("mairie-pc-1".into(), "mairie".into(), "hdv".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("ecole-pc-1".into(), "ecoles".into(), "jaures".into())),
        "{tags:?}"
    );
    for s in series {
        assert!(["rapl", "model", "battery"].contains(&s["tags"]["source"].as_str().unwrap_or("")));
        assert!(
            s["values"][0][1].as_f64().unwrap_or(0.0) > 0.0,
            "power: {s}"
        );
        assert!(s["values"][0][2].as_f64().unwrap_or(0.0) > 0.0, "co2e: {s}");
    }

    // The findings, per host, as the detectors stored them: the idle
    // server's whole energy at stake (10 W all year × PUE 1.58).
    let r = influx
        .query("SELECT last(\"active\") AS \"active\", last(\"saving_kwh_year\") AS \"kwh\", last(\"saving_w\") AS \"w\" FROM \"finding\" GROUP BY \"kind\", \"host\"")
        .await;
    let found: BTreeMap<(String, String), (u64, f64, f64)> = r["series"]
        .as_array()
        .expect("finding series")
        .iter()
        .map(|s| {
            let t = &s["tags"];
            let v = &s["values"][0];
            (
                (
                    t["kind"].as_str().unwrap_or("").to_owned(),
                    t["host"].as_str().unwrap_or("").to_owned(),
                ),
                (
                    v[1].as_u64().unwrap_or(0),
                    v[2].as_f64().unwrap_or(0.0),
                    v[3].as_f64().unwrap_or(0.0),
                ),
            )
        })
        .collect();
    let get = |kind: &str, host: &str| {
        *found
            .get(&(kind.to_owned(), host.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} point for {host}: {found:?}"))
    };
    let (n, kwh, w) = get("idle_server", "idle-srv-1");
    assert_eq!(n, 1, "{found:?}");
    assert!((kwh - 87.6 * 1.58).abs() < 1e-6, "{found:?}");
    assert!((w - 10.0 * 1.58).abs() < 1e-6, "{found:?}");
    assert_eq!(get("left_on", "left-on-pc-1").0, 1, "{found:?}");
    let idle_hosts: Vec<&String> = found
        .keys()
        .filter(|(k, _)| k == "idle_server")
        .map(|(_, h)| h)
        .collect();
    assert_eq!(idle_hosts, ["idle-srv-1"], "only the idle server");

    // Every dashboard query, as Grafana sends it.
    let range = (start_ms - 300_000, sobre_tests::now_ms() + 60_000);
    let mut all: BTreeMap<&str, String> = ["site", "group", "host"]
        .into_iter()
        .map(|k| (k, ".*".to_owned()))
        .collect();
    all.insert("campaign", regex_escape(cleanup::ID));
    let hostname = c.get(&format!("/api/v1/agents/{}", a.id)).await["hostname"]
        .as_str()
        .expect("hostname")
        .to_owned();
    let mut queries = 0;
    for (name, dash) in dashboards() {
        // The variables' own queries list what the panels are filtered by.
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            let q = expand(v["query"].as_str().expect("variable query"), &all, 0, 0);
            let r = influx.query(&q).await;
            let values: BTreeSet<&str> = r["series"][0]["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|kv| kv[1].as_str())
                .collect();
            assert!(!values.is_empty(), "{name}: variable {}: {q}", v["name"]);
            match v["name"].as_str() {
                Some("campaign") => assert!(values.contains(cleanup::ID), "{values:?}"),
                Some("group") if name.contains("cleanup-day") => {
                    assert_eq!(values, BTreeSet::from(["ecoles", "mairie"]))
                }
                _ => {}
            }
        }
        queries += check_dashboard(&influx, &name, &dash, &|_| all.clone(), range).await;
        // One host selected, as a user would: the filters must keep data.
        // Each panel is looked at with a host it concerns.
        let one = |q: &str| {
            let host = if q.contains("'idle_server'") {
                "idle-srv-1"
            } else if q.contains("'left_on'") {
                "left-on-pc-1"
            } else if name.contains("storage") {
                "nas-1"
            } else {
                hostname.as_str()
            };
            let mut v = all.clone();
            v.insert("host", regex_escape(host));
            // The campaign dashboard filters by group only.
            if name.contains("cleanup-day") {
                v.insert("group", "mairie".to_owned());
            }
            v
        };
        check_dashboard(&influx, &name, &dash, &one, range).await;
    }
    assert!(queries >= 25, "only {queries} dashboard queries ran");
    // A filter that matches nothing returns nothing (data, not status, is
    // what the checks above look at).
    let r = influx
        .query("SELECT mean(\"cpu_percent\") FROM \"usage\" WHERE \"host\" =~ /^no-such-host$/")
        .await;
    assert!(r["series"].is_null(), "{r}");
    assert_eq!(metric(&c, "sobre_sink_points_dropped_total").await, 0);
    assert!(metric(&c, "sobre_sink_points_written_total").await > 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoriametrics_receives_the_same_points_over_api_v2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vm = Server::victoria(&dir.path().join("vm")).await;
    let mut c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: sink_toml("v2", vm.port, "org = \"ville\"\n"),
            ..Default::default()
        },
    )
    .await;
    let mut a = Agent::start(
        &dir.path().join("a1"),
        &labelled("vm-pc-1", "mairie", "hdv"),
        c.mqtt,
        c.grpc,
    );
    c.wait_samples(&a.id, 20, PATIENCE).await;
    assert!(a.stop().await.success());
    let stored = c.sample_seqs(&a.id).await;
    wait_for("the sink to catch up", PATIENCE, || async {
        (metric(&c, "sobre_sink_backlog_rows").await == 0
            && metric(&c, "sobre_sink_points_written_total").await >= stored.len() as u64)
            .then_some(())
    })
    .await;
    let client = sobre_tests::http_client();
    let export = || async {
        client
            .get(vm.url("/internal/force_flush"))
            .send()
            .await
            .expect("force_flush");
        let url = reqwest::Url::parse_with_params(
            &vm.url("/api/v1/export"),
            &[("match[]", "{__name__=~\"(usage|host)_.*\"}")],
        )
        .expect("url");
        client
            .get(url)
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("text")
    };
    let text = wait_for("every seq in VictoriaMetrics", PATIENCE, || async {
        let t = export().await;
        let n: usize = t
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["metric"]["__name__"] == "usage_seq" && v["metric"]["agent"] == "vm-pc-1")
            .map(|v| v["values"].as_array().map_or(0, Vec::len))
            .sum();
        (n >= stored.len()).then_some(t)
    })
    .await;
    let mut names = BTreeSet::new();
    let mut seqs = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("export line");
        let m = &v["metric"];
        names.insert(m["__name__"].as_str().unwrap_or("").to_owned());
        if m["__name__"] == "usage_seq" && m["agent"] == "vm-pc-1" {
            assert_eq!(m["group"], "mairie", "{m}");
            assert_eq!(m["site"], "hdv", "{m}");
            assert!(m["host"].is_string(), "{m}");
            assert!(m["source"].is_string(), "{m}");
            seqs.extend(
                v["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(-1.0) as u64),
            );
            // Timestamps are the samples' own (precision=ms).
            let ts = v["timestamps"][0].as_i64().expect("timestamp");
            assert!((ts - sobre_tests::now_ms()).abs() < 600_000, "{ts}");
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, stored, "every stored sample once, nothing else");
    for want in [
        "usage_seq",
        "usage_cpu_percent",
        "usage_mem_used_bytes",
        "usage_power_w",
        "usage_energy_j",
        "usage_co2e_g",
        "usage_agent_rss_bytes",
        "host_embodied_g",
        "host_embodied_kg_per_year",
        "host_age_years",
        "host_life_extension_kg_per_year",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert_eq!(metric(&c, "sobre_sink_points_dropped_total").await, 0);
    assert_eq!(c.stop().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_outage_while_agents_stream_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut influx = Server::influxdb(&dir.path().join("influx")).await;
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: sink_toml("v1", influx.port, ""),
            ..Default::default()
        },
    )
    .await;
    let mut agents = vec![
        Agent::start(
            &dir.path().join("a1"),
            &labelled("out-pc-1", "mairie", "hdv"),
            c.mqtt,
            c.grpc,
        ),
        Agent::start(
            &dir.path().join("a2"),
            &labelled("out-pc-2", "ecoles", "jaures"),
            c.mqtt,
            c.grpc,
        ),
    ];
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    for id in &ids {
        let influx = &influx;
        wait_for(
            "points in InfluxDB before the outage",
            PATIENCE,
            || async move { (influx.seqs(id).await.len() >= 10).then_some(()) },
        )
        .await;
    }

    // The server goes away while the agents keep streaming.
    influx.stop().await;
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(c.sample_seqs(id).await.len());
        }
        v
    };
    let retried = metric(&c, "sobre_sink_points_retried_total").await;
    // About ten seconds at 100 ms a sample: 100 more samples per agent
    // stored while the server is down, and the sink retrying.
    for (id, n) in ids.iter().zip(&before) {
        c.wait_samples(id, n + 100, PATIENCE).await;
    }
    wait_for("the sink to retry", PATIENCE, || async {
        (metric(&c, "sobre_sink_points_retried_total").await > retried).then_some(())
    })
    .await;
    let backlog = metric(&c, "sobre_sink_backlog_rows").await;
    assert!(backlog >= 150, "the store holds the backlog: {backlog}");

    // Back: the backlog drains, in order, while agents still stream.
    influx.restart().await;
    wait_for("the backlog to drain", PATIENCE, || async {
        (metric(&c, "sobre_sink_backlog_rows").await < 50).then_some(())
    })
    .await;
    for a in &mut agents {
        assert!(a.stop().await.success());
    }
    let mut stored = Vec::new();
    for id in &ids {
        stored.push(c.sample_seqs(id).await);
    }
    // The backlog gauge may lag by a second: wait for the server to hold
    // as many points as the store has samples (a lost point times out
    // here, a doubled one would show below).
    for (id, seqs) in ids.iter().zip(&stored) {
        let influx = &influx;
        wait_for(
            "the sink to send the last samples",
            PATIENCE,
            || async move { (influx.seqs(id).await.len() >= seqs.len()).then_some(()) },
        )
        .await;
    }
    wait_for("the backlog gauge at 0", PATIENCE, || async {
        (metric(&c, "sobre_sink_backlog_rows").await == 0).then_some(())
    })
    .await;
    for (id, seqs) in ids.iter().zip(&stored) {
        crate::assert_once_in_order(seqs);
        let got = influx.seqs(id).await;
        assert_eq!(
            got.len(),
            seqs.len(),
            "{id}: InfluxDB has {} points, the store {} samples",
            got.len(),
            seqs.len()
        );
        assert_eq!(&got, seqs, "{id}: the same samples, each once");
    }
    assert_eq!(metric(&c, "sobre_sink_points_dropped_total").await, 0);
    let log = c.log();
    assert!(log.contains("sink write failed"), "the outage is logged");
    assert!(
        log.contains("sink writes succeed again"),
        "and the recovery"
    );
}
