//! The sink against a scripted HTTP server and a real store: retry on
//! 5xx, split on 413, drop what a 4xx refuses, move the cursor only once
//! the server answered, and send nothing twice across a restart.

use super::points::{self, Carbon, HostTags, Lines, SampleRow};
use super::*;
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct Script {
    /// Answers for requests holding `usage` lines; 204 when empty.
    answers: VecDeque<(u16, &'static str)>,
    /// Every usage line received with a 2xx or 4xx answer, in order.
    usage: Vec<String>,
    snapshots: Vec<String>,
}

type Shared = Arc<Mutex<Script>>;

async fn write(State(s): State<Shared>, body: axum::body::Bytes) -> (StatusCode, String) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip body");
    let mut s = s.lock().expect("lock");
    if !text.starts_with("usage,") {
        s.snapshots.push(text);
        return (StatusCode::NO_CONTENT, String::new());
    }
    let (code, msg) = s.answers.pop_front().unwrap_or((204, ""));
    if code < 500 && code != 413 {
        s.usage.extend(text.lines().map(str::to_owned));
    }
    (StatusCode::from_u16(code).expect("status"), msg.to_owned())
}

async fn server(script: Shared) -> String {
    let app = axum::Router::new()
        .route("/write", axum::routing::post(write))
        .with_state(script);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

fn store_with_samples(dir: &Path, from_seq: i64, n: i64) {
    let conn: crate::store::Conn = Box::new(crate::store::open(dir, false).expect("store"));
    conn.execute(
        "INSERT OR IGNORE INTO agents (id, agent_id, hostname, first_seen_ms, last_seen_ms, inventory)
         VALUES (1, 'pc-1', 'pc-1.mairie', 0, 0, '{\"group\":\"mairie\",\"site\":\"hdv\",\"chassis\":\"desktop\"}')",
        crate::args![],
    )
    .expect("agent");
    for seq in from_seq..from_seq + n {
        conn.execute(
            "INSERT INTO samples (agent, seq, sent_ms, received_ms, interval_ms, cpu_percent,
                power_w, energy_j, power_source)
             VALUES (1, ?1, ?2, ?2, 10000, 12.5, 30.0, 300.0, 'model')",
            crate::args![seq, 1_700_000_000_000 + seq * 10_000],
        )
        .expect("sample");
    }
}

fn cfg(url: String) -> SinkConfig {
    SinkConfig {
        enabled: true,
        api: Api::V1,
        url,
        batch_max: 10,
        flush_interval_ms: 20,
        retry_min_ms: 10,
        retry_max_ms: 40,
        ..Default::default()
    }
}

/// A sink of `cfg(url)` on the SQLite store in `dir`.
fn sink(url: String, dir: &Path, metrics: &Arc<Metrics>) -> Sink {
    Sink::new(
        &cfg(url),
        &crate::store::Location::sqlite(dir),
        crate::cluster::Cluster::single("test".into()),
        FootprintConfig::default(),
        GridIntensity::flat(56.0),
        metrics.clone(),
    )
    .expect("sink")
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn seqs(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| {
            let i = l.find(" seq=").expect("seq field") + 5;
            l[i..]
                .split(['i', ','])
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq value")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_splits_drops_and_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_samples(dir.path(), 1, 10);
    let script: Shared = Arc::default();
    script.lock().expect("lock").answers = VecDeque::from([
        (503, "busy"),
        (413, "too large"),
        (204, ""),
        (
            400,
            "{\"error\":\"partial write: field type conflict dropped=1\"}",
        ),
    ]);
    let url = server(script.clone()).await;
    let metrics = Arc::new(Metrics::default());
    let start = |metrics: Arc<Metrics>| {
        let sink = sink(url.clone(), dir.path(), &metrics);
        let cancel = CancellationToken::new();
        (tokio::spawn(sink.run(cancel.clone())), cancel)
    };
    let (task, cancel) = start(metrics.clone());
    // 10 samples and one `host` point (the snapshot at start).
    until("11 points answered for", || {
        metrics.sink_written.load(Relaxed) + metrics.sink_dropped.load(Relaxed) == 11
    })
    .await;
    assert_eq!(
        metrics.sink_retried.load(Relaxed),
        10,
        "one 503 for the batch"
    );
    assert_eq!(metrics.sink_written.load(Relaxed), 10);
    assert_eq!(metrics.sink_dropped.load(Relaxed), 1);
    until("the cursor on disk", || {
        std::fs::read_to_string(dir.path().join(cursor::FILE))
            .is_ok_and(|t| t.contains("rowid 10\n"))
    })
    .await;
    until("backlog 0", || metrics.sink_backlog.load(Relaxed) == 0).await;
    {
        let s = script.lock().expect("lock");
        assert_eq!(
            seqs(&s.usage),
            (1..=10).collect::<Vec<_>>(),
            "halves in order"
        );
        assert!(s.usage[0].starts_with(
            "usage,agent=pc-1,chassis=desktop,group=mairie,host=pc-1.mairie,site=hdv,source=model seq=1i,"
        ), "{}", s.usage[0]);
        assert!(s.usage[0].ends_with(" 1700000010000"), "{}", s.usage[0]);
        assert!(
            s.snapshots
                .iter()
                .any(|t| t.starts_with("host,agent=pc-1,")),
            "{:?}",
            s.snapshots
        );
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("bounded stop")
        .expect("no panic");

    // Restart: only what was stored since is sent.
    store_with_samples(dir.path(), 11, 3);
    let metrics = Arc::new(Metrics::default());
    let (task, cancel) = start(metrics.clone());
    // 3 samples and the snapshot again (same period: the same point).
    until("3 more points", || metrics.sink_written.load(Relaxed) == 4).await;
    assert_eq!(
        seqs(&script.lock().expect("lock").usage),
        (1..=13).collect::<Vec<_>>(),
        "nothing sent twice"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("bounded stop")
        .expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_keeps_everything_and_stops_promptly() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_samples(dir.path(), 1, 5);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let metrics = Arc::new(Metrics::default());
    let sink = sink(format!("http://127.0.0.1:{port}"), dir.path(), &metrics);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sink.run(cancel.clone()));
    until("retries", || metrics.sink_retried.load(Relaxed) >= 10).await;
    assert_eq!(metrics.sink_written.load(Relaxed), 0);
    assert_eq!(metrics.sink_dropped.load(Relaxed), 0);
    assert_eq!(metrics.sink_backlog.load(Relaxed), 5);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("bounded stop")
        .expect("no panic");
    assert!(
        !dir.path().join(cursor::FILE).exists(),
        "cursor never moved"
    );
}

/// Regression: the sender never gave delivered batches back to the
/// pool, so every batch allocated (and page-faulted) its text afresh
/// although BENCHMARKS.md said the buffers were reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_batches_never_went_back_to_the_buffer_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_samples(dir.path(), 1, 100);
    let script: Shared = Arc::default();
    let url = server(script.clone()).await;
    let metrics = Arc::new(Metrics::default());
    let sink = sink(url, dir.path(), &metrics);
    let pool = sink.pool();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sink.run(cancel.clone()));
    until("100 points", || metrics.sink_written.load(Relaxed) >= 100).await;
    cancel.cancel();
    task.await.expect("no panic");
    assert_eq!(
        seqs(&script.lock().expect("lock").usage),
        (1..=100).collect::<Vec<_>>()
    );
    // Ten batches of ten: at most the first three are built before one
    // comes back (one on the wire, one in the channel, one being built).
    assert!(pool.reused() >= 7, "reused {} of 10", pool.reused());
}

fn tags() -> HostTags {
    HostTags {
        agent: "pc 1".into(),
        host: Some("poste,1".into()),
        group: Some("".into()),
        site: None,
        chassis: Some("laptop".into()),
    }
}

#[test]
fn sample_lines_parse_and_carry_co2e() {
    let fp = FootprintConfig::default();
    let grid = GridIntensity::flat(100.0);
    let carbon = Carbon {
        footprint: &fp,
        grid: &grid,
    };
    let row = SampleRow {
        rowid: 1,
        agent: 1,
        seq: 7,
        sent_ms: 1_700_000_000_000,
        interval_ms: Some(10_000),
        cpu_percent: Some(f64::NAN),
        mem_total: Some(8_000),
        mem_available: Some(3_000),
        energy_j: Some(3.6e6),
        power_w: Some(360.0),
        user_active: Some(true),
        power_source: Some("rapl".into()),
        ..Default::default()
    };
    let mut lines = Lines::default();
    points::sample(&mut lines, &tags(), &row, &carbon);
    let text = String::from_utf8(lines.buf.clone()).expect("utf8");
    let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&text)
        .collect::<Result<_, _>>()
        .expect("valid line protocol");
    assert_eq!(parsed.len(), 1);
    let p = &parsed[0];
    assert_eq!(p.series.measurement.as_str(), "usage");
    let tag = |k: &str| {
        p.series
            .tag_set
            .as_ref()
            .and_then(|t| t.iter().find(|(n, _)| n.as_str() == k))
            .map(|(_, v)| v.to_string())
    };
    assert_eq!(tag("agent").as_deref(), Some("pc 1"), "escaped, not split");
    assert_eq!(tag("host").as_deref(), Some("poste,1"));
    assert_eq!(tag("group"), None, "empty labels are left out");
    assert_eq!(tag("source").as_deref(), Some("rapl"));
    let field = |k: &str| {
        p.field_set
            .iter()
            .find(|(n, _)| n.as_str() == k)
            .map(|(_, v)| v.to_string())
    };
    assert_eq!(field("cpu_percent"), None, "NaN is left out");
    assert_eq!(field("mem_used_bytes").as_deref(), Some("5000i"));
    assert_eq!(field("user_active").as_deref(), Some("1i"));
    // 1 kWh × PUE 1.0 (laptop) × 100 g/kWh.
    assert_eq!(field("co2e_g").as_deref(), Some("100"));
    assert_eq!(p.timestamp, Some(1_700_000_000_000));
    assert_eq!(lines.slice(0, 1), &lines.buf[..]);
}

#[test]
fn schema_md_lists_every_measurement_and_field() {
    let schema = include_str!("../../../SCHEMA.md");
    for (m, fields) in points::SCHEMA {
        assert!(
            schema.contains(&format!("### `{m}`")),
            "SCHEMA.md has no section for {m}"
        );
        for f in *fields {
            assert!(
                schema.contains(&format!("`{f}`")),
                "SCHEMA.md does not mention field {f} of {m}"
            );
        }
    }
}

mod same_bytes_as_the_builder {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof!["[a-z0-9.-]{0,12}", "[ ,=\"\\\\a-zé]{0,8}",])
    }
    fn f() -> impl Strategy<Value = Option<f64>> {
        prop::option::of(prop_oneof![
            any::<f64>(),
            -1e6..1e6f64,
            // What rounding to 3 or 6 places gives (the fast path).
            (-1e10..1e10f64).prop_map(|v| (v * 1e3).round() / 1e3),
            (-1e7..1e7f64).prop_map(|v| (v * 1e6).round() / 1e6),
            (-1e3..1e3f64).prop_map(|v| (v * 1e3).round() / 1e6),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(0.0),
        ])
    }
    fn i() -> impl Strategy<Value = Option<i64>> {
        prop::option::of(any::<i64>())
    }

    proptest! {
        #[test]
        fn cached_keys_write_what_the_builder_writes(
            agent in "[a-zA-Z0-9._ ,=-]{1,16}",
            host in text(), group in text(), site in text(), chassis in text(),
            source in text(),
            seq in any::<i64>(), sent in any::<i64>(),
            floats in prop::collection::vec(f(), 8),
            ints in prop::collection::vec(i(), 14),
            active in prop::option::of(any::<bool>()),
        ) {
            let tags = HostTags { agent, host, group, site, chassis };
            let r = SampleRow {
                rowid: 1, agent: 1, seq, sent_ms: sent,
                interval_ms: ints[0].map(|v| v % 1_000_000_000),
                cpu_percent: floats[0], mem_total: ints[1], mem_available: ints[2],
                swap_total: ints[3], swap_used: ints[4], disk_read: ints[5],
                disk_written: ints[6], net_rx: ints[7], net_tx: ints[8],
                load1: floats[1], load5: floats[2], load15: floats[3],
                uptime_s: ints[9], user_sessions: ints[10], input_idle_s: ints[11],
                user_active: active, agent_cpu_s: floats[4], agent_rss: ints[12],
                agent_sent: ints[13], power_w: floats[5], energy_j: floats[6],
                power_source: source,
            };
            let fp = FootprintConfig::default();
            let grid = GridIntensity::flat(56.0);
            let carbon = Carbon { footprint: &fp, grid: &grid };
            let mut reference = Lines::default();
            points::sample(&mut reference, &tags, &r, &carbon);
            let mut fast = Lines::default();
            let mut keys = super::series::SeriesKeys::default();
            keys.sample(&mut fast, &tags, 0, &r, &carbon);
            // Twice: the second line comes from the cached key.
            keys.sample(&mut fast, &tags, 0, &r, &carbon);
            let one = String::from_utf8_lossy(&reference.buf).into_owned();
            prop_assert_eq!(String::from_utf8_lossy(fast.slice(0, 1)), one.as_str());
            prop_assert_eq!(String::from_utf8_lossy(fast.slice(1, 2)), one.as_str());
            prop_assert_eq!(fast.ends.len(), 2);
        }
    }
}

#[test]
fn findings_are_summed_per_kind_and_host_and_resolved_ones_read_zero() {
    use crate::detect::{Finding, Kind};
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_samples(dir.path(), 1, 1);
    let conn: crate::store::Conn = Box::new(crate::store::open(dir.path(), false).expect("store"));
    let mut idle = Finding::new(
        Kind::IdleServer,
        Some("pc-1"),
        "pc-1",
        serde_json::json!({}),
    );
    idle.saving_kwh_year = Some(87.6);
    let battery = |name: &str| {
        let mut f = Finding::new(
            Kind::BatteryWorn,
            Some("pc-1"),
            &format!("pc-1/{name}"),
            serde_json::json!({}),
        );
        f.saving_kg_year = Some(1.5);
        f
    };
    let fleet = Finding::new(Kind::Redundant, None, "content-1", serde_json::json!({}));
    let pass = [idle.clone(), battery("BAT0"), battery("BAT1"), fleet];
    crate::store::findings::apply_pass(&conn, &pass, 1_000).expect("pass 1");
    // The idle server is busy again: its finding resolves.
    crate::store::findings::apply_pass(&conn, &pass[1..], 2_000).expect("pass 2");
    let rows = Source::open(&crate::store::Location::sqlite(dir.path()), None)
        .expect("source")
        .findings()
        .expect("findings");
    let get = |kind: &str| {
        rows.iter()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("{kind}: {rows:?}"))
    };
    let idle = get("idle_server");
    assert_eq!((idle.active, idle.open), (0, 0), "resolved: {idle:?}");
    assert_eq!(idle.saving_kwh_year, 0.0, "nothing at stake any more");
    assert_eq!(idle.oldest_active_ms, None);
    let bat = get("battery_worn");
    assert_eq!((bat.active, bat.open), (2, 2), "two batteries, one point");
    assert!((bat.saving_kg_year - 3.0).abs() < 1e-9, "{bat:?}");
    assert_eq!(bat.oldest_active_ms, Some(1_000));
    assert_eq!(get("redundant").agent_id, None);
    assert_eq!(rows.len(), 3);
}

/// Found by fuzz/fuzz_targets/line_protocol.rs: a tag value with a line
/// break ended the line early (the rest parsed as another point, so an
/// agent could write points for any other), and one with a tab or ending
/// with a backslash made the whole batch unparseable. The agent's value
/// below is the fuzzer's.
#[test]
fn tag_value_with_line_break_tab_or_trailing_backslash_broke_the_line() {
    let tags = HostTags {
        agent: "pc 1,host=a\"b\\poste,1g=r p\\\n   h".into(),
        host: Some("pc\r\nusage,agent=other cpu_percent=100 0\n".into()),
        group: Some("salle\\".into()),
        site: Some("\\\\".into()),
        chassis: Some("\t laptop".into()),
    };
    let fp = FootprintConfig::default();
    let grid = GridIntensity::flat(100.0);
    let carbon = Carbon {
        footprint: &fp,
        grid: &grid,
    };
    let row = SampleRow {
        seq: 1,
        sent_ms: 1_700_000_000_000,
        ..Default::default()
    };
    let mut lines = Lines::default();
    points::sample(&mut lines, &tags, &row, &carbon);
    let summary = sobre_proto::v1::StorageSummary {
        categories: vec![sobre_proto::v1::CategoryTotal {
            category: "cache\n".into(),
            age: "1y\\".into(),
            files: 1,
            bytes: 2,
        }],
        ..Default::default()
    };
    points::storage(&mut lines, &tags, &summary, 0);
    let text = String::from_utf8(lines.buf.clone()).expect("utf8");
    let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&text)
        .collect::<Result<_, _>>()
        .expect("valid line protocol");
    assert_eq!(parsed.len(), 3, "{text}");
    assert_eq!(lines.len(), 3);
    let tag = |i: usize, k: &str| {
        parsed[i]
            .tag_value(k)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    assert_eq!(tag(0, "agent"), "pc 1,host=a\"b\\poste,1g=r p\\    h");
    assert_eq!(tag(0, "host"), "pc  usage,agent=other cpu_percent=100 0 ");
    assert_eq!(tag(0, "group"), "salle");
    assert_eq!(tag(0, "site"), "", "only backslashes: left out");
    assert_eq!(tag(0, "chassis"), "  laptop");
    assert_eq!(tag(1, "category"), "cache ");
    assert_eq!(tag(1, "age"), "1y");
    assert_eq!(tag(1, "agent"), tag(0, "agent"));
    assert_eq!(tag(2, "agent"), tag(0, "agent"));
}

/// A host whose one device, in use since `since_ms`, has
/// `lifetime_years`: its line at 1_700_000_000_000, parsed back.
fn host_line_of_device_living(lifetime_years: f64, since_ms: i64) -> Vec<(String, String)> {
    use crate::footprint::compute::{Device, HostFootprint, Totals};
    let device = Device {
        kind: "host",
        class: "server".into(),
        name: "pc".into(),
        embodied_kg: 300.0,
        lifetime_years,
        since_ms,
        since_from: "bios",
        past_lifetime: false,
        amortised_kg: 0.0,
        life_extension_kg_per_year: 0.0,
        assumed: false,
    };
    let h = HostFootprint {
        id: "pc".into(),
        hostname: None,
        group: String::new(),
        chassis: "server".into(),
        pue: 1.5,
        totals: Totals::default(),
        devices: vec![device],
    };
    let mut lines = Lines::default();
    points::host(&mut lines, &tags(), &h, true, 1_700_000_000_000);
    let text = String::from_utf8(lines.buf.clone()).expect("utf8");
    let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&text)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("invalid line protocol ({e}): {text}"));
    assert_eq!(parsed.len(), 1);
    parsed[0]
        .field_set
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field(fields: &[(String, String)], key: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Found by fuzz/fuzz_targets/line_protocol.rs: a device lifetime that
/// `[footprint.embodied]` accepts (any finite number of years) overflowed
/// its end date: a panic in debug builds, a wrong "alive" in release.
#[test]
fn device_lifetime_of_huge_years_overflowed_its_end_date() {
    let fields = host_line_of_device_living(1e300, 1_600_000_000_000);
    // Still alive: its manufacture is spread over its (long) life.
    let rate: f64 = field(&fields, "embodied_kg_per_year")
        .expect("written")
        .parse()
        .expect("a number");
    assert_eq!(rate, 300.0 / 1e300);
}

/// Found by fuzz/fuzz_targets/line_protocol.rs: a lifetime near zero
/// (accepted, it is > 0) made `embodied_kg_per_year` infinite, written as
/// `inf`, which made the whole batch unparseable. It is now left out.
#[test]
fn device_lifetime_near_zero_wrote_inf_into_the_host_line() {
    // Its life has not ended yet at the snapshot, so its rate counts.
    let fields = host_line_of_device_living(1e-310, 1_700_000_000_001);
    assert_eq!(field(&fields, "embodied_kg_per_year"), None);
    assert_eq!(field(&fields, "embodied_kg").as_deref(), Some("300"));
}
