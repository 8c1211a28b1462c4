//! Issue 9, "time series from every collector to the same InfluxDB;
//! dashboards unchanged": two collectors on one PostgreSQL store and one
//! Mosquitto share group, each with its sink to the same real InfluxDB,
//! agents streaming, one collector killed mid-stream and restarted.
//!
//! Each sink reaches InfluxDB through a relay of the test's own
//! ([`Relay`]), which passes every request on and keeps the bodies the
//! server accepted: that says which collector wrote which point, which the
//! server alone cannot (a point written twice with the same series and
//! time is stored once). The relay can also answer 503 for a while, as an
//! unreachable server would, so that the killed collector holds samples it
//! has stored and not yet sent.

use crate::PATIENCE;
use crate::cluster::{a_leads, finish_n, leader_lines, loadgen_n, member_with, on_postgres};
use crate::influx::cleanup;
use crate::influx::dashboards::{check_dashboard, dashboards, expand, regex_escape};
use crate::influx::server::Server;
use crate::influx::{labelled, quiet_history, sink_toml, storage_host};
use sobre_tests::{Agent, Collector, Mosquitto, Postgres, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one collector's sink got written: the bodies InfluxDB answered
/// 2xx for, in order, and how many requests the relay refused.
#[derive(Default)]
struct Tap {
    paused: bool,
    written: Vec<String>,
    refused: u64,
}

/// An HTTP/1.1 relay between one collector's sink and InfluxDB.
struct Relay {
    port: u16,
    tap: Arc<Mutex<Tap>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(influx_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay bind");
        let port = listener.local_addr().expect("relay address").port();
        let tap: Arc<Mutex<Tap>> = Arc::default();
        let (t, upstream) = (tap.clone(), format!("http://127.0.0.1:{influx_port}"));
        let task = tokio::spawn(async move {
            let http = sobre_tests::http_client();
            while let Ok((conn, _)) = listener.accept().await {
                let (t, up, http) = (t.clone(), upstream.clone(), http.clone());
                tokio::spawn(async move {
                    let _ = relay(conn, &up, &t, &http).await;
                });
            }
        });
        Relay { port, tap, task }
    }

    /// While paused, every request is answered 503 and not passed on.
    fn pause(&self, paused: bool) {
        self.tap.lock().expect("tap").paused = paused;
    }

    /// The bodies written so far.
    fn written(&self) -> Vec<String> {
        self.tap.lock().expect("tap").written.clone()
    }

    fn refused(&self) -> u64 {
        self.tap.lock().expect("tap").refused
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one keep-alive connection: each request (Content-Length
/// bodies, which the sink sends) is passed on unless paused, and the
/// server's status and body go back.
async fn relay(
    mut conn: tokio::net::TcpStream,
    upstream: &str,
    tap: &Mutex<Tap>,
    http: &reqwest::Client,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let target = String::from_utf8_lossy(&buf[..head_end])
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        assert!(
            header("content-encoding").is_none(),
            "the relay reads plain line protocol: set sink.gzip = false"
        );
        let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let paused = tap.lock().expect("tap").paused;
        let (status, reply) = if paused {
            (503, "paused by the test".to_owned())
        } else {
            match http
                .post(format!("{upstream}{target}"))
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (502, e.to_string()),
            }
        };
        {
            let mut t = tap.lock().expect("tap");
            if (200..300).contains(&status) {
                t.written
                    .push(String::from_utf8(body).expect("line protocol is UTF-8"));
            } else {
                t.refused += 1;
            }
        }
        let response = format!(
            "HTTP/1.1 {status} Relayed\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        conn.write_all(response.as_bytes()).await?;
    }
}

/// `s` cut at each `sep` that no backslash escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            _ if c == sep => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// An agent's sample, as the store and InfluxDB both name it.
type Key = (String, u64);

/// What the written bodies hold: every `usage` point's (agent, seq), in
/// the order written (repeats kept), and the number of lines of every
/// other measurement.
fn tally(bodies: &[String]) -> (Vec<Key>, BTreeMap<String, usize>) {
    let (mut usage, mut others) = (Vec::new(), BTreeMap::new());
    for line in bodies
        .iter()
        .flat_map(|b| b.lines())
        .filter(|l| !l.is_empty())
    {
        let parts = split_unescaped(line, ' ');
        let key = split_unescaped(parts[0], ',');
        if key[0] != "usage" {
            *others.entry(key[0].to_owned()).or_insert(0) += 1;
            continue;
        }
        let agent = key[1..]
            .iter()
            .find_map(|t| t.strip_prefix("agent="))
            .unwrap_or_else(|| panic!("a usage point without its agent: {line}"));
        let seq = split_unescaped(parts[1], ',')
            .iter()
            .find_map(|f| f.strip_prefix("seq=")?.strip_suffix('i')?.parse().ok())
            .unwrap_or_else(|| panic!("a usage point without its seq: {line}"));
        usage.push((agent.to_owned(), seq));
    }
    (usage, others)
}

/// Every sample in the shared store: (rowid, node, agent, seq), by rowid.
async fn stored_rows(url: &str) -> Vec<(i64, String, Key)> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query(
            "SELECT s.rowid, s.node, a.agent_id, s.seq FROM samples s
             JOIN agents a ON a.id = s.agent ORDER BY s.rowid",
            &[],
        )
        .expect("samples")
        .iter()
        .map(|r| {
            let seq: i64 = r.get(3);
            (r.get(0), r.get(1), (r.get(2), seq as u64))
        })
        .collect()
    })
    .await
    .expect("join")
}

/// The rowid in a collector's sink cursor file (`data_dir/sink.cursor`).
fn cursor(c: &Collector) -> i64 {
    let text = std::fs::read_to_string(c.data_dir.join("sink.cursor")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("rowid ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether InfluxDB's `usage` seqs are, for every agent the cluster
/// knows, the seqs of its stored samples (read through the collector's
/// API), leaving out `not_yet` (stored, not sent yet).
async fn same_seqs(c: &Collector, influx: &Server, not_yet: &BTreeSet<Key>) -> bool {
    for a in c.get("/api/v1/agents").await.as_array().expect("agents") {
        let id = a["id"].as_str().expect("id");
        let mut stored = c.sample_seqs(id).await;
        stored.retain(|s| !not_yet.contains(&(id.to_owned(), *s)));
        stored.sort_unstable();
        if influx.seqs(id).await != stored {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_postgres_write_every_sample_once_to_one_influxdb() {
    const AGENTS: usize = 20;
    const COUNT: u64 = 60;
    const STORED: &str = "sobre_envelopes_stored_total";
    let dir = tempfile::tempdir().expect("tempdir");
    let start_ms = sobre_tests::now_ms();
    let m = Mosquitto::start(&dir.path().join("mosquitto")).await;
    let pg = Postgres::start(&dir.path().join("pg")).await;
    let influx = Server::influxdb(&dir.path().join("influx")).await;
    let url = pg.url();
    let relays = [
        Relay::start(influx.port).await,
        Relay::start(influx.port).await,
    ];
    let config = |node: &str, r: &Relay| {
        let sink = sink_toml("v1", r.port, "gzip = false");
        // on_postgres ends in [nudge]: campaign commands resent quickly.
        format!("{}resend_after_s = 5\n{sink}", on_postgres(&url, node))
    };
    let a = member_with(&dir.path().join("a"), m.port, config("a", &relays[0])).await;
    let b = member_with(&dir.path().join("b"), m.port, config("b", &relays[1])).await;
    let (mut leader, follower, [lr, fr], [ln, fnode]) = if a_leads(&a, &b).await {
        let [ra, rb] = relays;
        (a, b, [ra, rb], ["a", "b"])
    } else {
        let [ra, rb] = relays;
        (b, a, [rb, ra], ["b", "a"])
    };

    // The fleet of the single-collector test: two real agents with their
    // labels, one of them scanning a tiny tree for a Clean Up Day
    // campaign, a file server's storage scan, an idle server and a desktop
    // left on (their findings come from the leader's passes).
    let tree = cleanup::tiny_tree(&dir.path().join("tree"));
    let mut mairie = labelled("mairie-pc-1", "mairie", "hdv");
    mairie.storage_toml = Some(cleanup::storage_toml(&dir.path().join("tree")));
    let mut real = [mairie, labelled("ecole-pc-1", "ecoles", "jaures")]
        .map(|o| Agent::start(&dir.path().join(&o.id), &o, m.port, 0));
    storage_host(m.port, "nas-1").await;
    let idle = quiet_history(m.port, "idle-srv-1", "server", 15 * 24).await;
    let left_on = quiet_history(m.port, "left-on-pc-1", "desktop", 7 * 24).await;
    follower.wait_samples("idle-srv-1", idle, PATIENCE).await;
    follower
        .wait_samples("left-on-pc-1", left_on, PATIENCE)
        .await;
    for a in &real {
        follower.wait_samples(&a.id, 10, PATIENCE).await;
    }
    let report = cleanup::run(&follower, &["mairie", "ecoles"], &tree[1].0).await;
    assert_eq!(report["totals"]["files_deleted"], 1, "{report}");
    let fleet_wide = [
        "campaign",
        "host",
        "storage",
        "storage_host",
        "storage_fleet",
        "finding",
    ];
    wait_for("the leader's fleet-wide points", PATIENCE, || async {
        let (_, others) = tally(&lr.written());
        let findings = influx
            .query("SELECT count(\"active\") FROM \"finding\" GROUP BY \"kind\"")
            .await;
        let kinds = findings["series"].as_array().map_or(0, Vec::len);
        (fleet_wide.iter().all(|m| others.contains_key(*m)) && kinds >= 2).then_some(())
    })
    .await;

    // The stream; once both collectors store it, the leader's server goes
    // unreachable (503) so that it holds samples not yet sent, then the
    // leader is killed.
    let base = [leader.metric(STORED).await, follower.metric(STORED).await];
    let mut lg = loadgen_n(dir.path(), m.port, "ci", AGENTS, COUNT, 100, 3_000);
    for (c, base) in [(&leader, base[0]), (&follower, base[1])] {
        wait_for("both members storing the stream", PATIENCE, || async {
            (c.metric(STORED).await >= base + 100).then_some(())
        })
        .await;
    }
    lr.pause(true);
    wait_for("the leader's sink behind", PATIENCE, || async {
        (leader.metric("sobre_sink_backlog_rows").await >= 40).then_some(())
    })
    .await;
    let gauge_at_kill = leader.metric("sobre_sink_backlog_rows").await;
    assert!(
        lg.try_wait().expect("loadgen status").is_none(),
        "the stream ended before the kill: raise COUNT"
    );
    let killed_at = Instant::now();
    leader.kill9();
    let at_kill = cursor(&leader);
    let rows_at_kill = stored_rows(&url).await;
    // Fleet-wide points come from the lease holder only.
    let (_, f_fleet) = tally(&fr.written());
    assert!(
        f_fleet.is_empty() || leader_lines(&follower).0 > 0,
        "the follower wrote fleet-wide points: {f_fleet:?}"
    );

    // The survivor takes the lease and the fleet-wide points with it.
    wait_for("the survivor's fleet-wide points", PATIENCE, || async {
        let (_, others) = tally(&fr.written());
        fleet_wide
            .iter()
            .all(|m| others.contains_key(*m))
            .then_some(())
    })
    .await;
    let moved_ms = killed_at.elapsed().as_millis();
    finish_n(lg, dir.path(), "ci", AGENTS, COUNT).await;
    for a in &mut real {
        assert!(a.stop().await.success(), "{}", a.log());
    }

    // The killed collector's unsent samples: its own, after its cursor,
    // that the server never got. Nobody else sends them: InfluxDB has
    // every other stored sample, and none of these.
    let written_before = lr.written().len();
    let (l_before, l_before_fleet) = tally(&lr.written());
    let l_before = once(&l_before, "the killed collector, before the kill");
    let after_cursor = |rows: &[(i64, String, Key)]| -> BTreeSet<Key> {
        rows.iter()
            .filter(|(rowid, node, _)| node == ln && *rowid > at_kill)
            .map(|(_, _, k)| k.clone())
            .collect()
    };
    let unsent: BTreeSet<Key> = after_cursor(&rows_at_kill)
        .difference(&l_before)
        .cloned()
        .collect();
    assert!(
        !unsent.is_empty(),
        "the killed collector had sent everything"
    );
    // Regression: sobre_sink_backlog_rows was a difference of rowids, which
    // on a shared store counts the other collector's rows too (41-51 said
    // for 22-33 unsent). It counts this collector's own unsent rows now,
    // read before the kill: never more than it held at the kill.
    let own_after_cursor = after_cursor(&rows_at_kill).len() as u64;
    assert!(
        gauge_at_kill <= own_after_cursor,
        "backlog gauge {gauge_at_kill} > the {own_after_cursor} samples after its cursor"
    );
    // The unsent ones are read again each time: a commit the killed
    // collector had already handed to PostgreSQL completes on its own,
    // possibly after `rows_at_kill` was read (this made the test time out
    // once, in CI, when the kill fell during a commit).
    wait_for(
        "InfluxDB to hold every sample but the killed collector's unsent ones",
        PATIENCE,
        || async {
            let rows = stored_rows(&url).await;
            let unsent: BTreeSet<Key> =
                after_cursor(&rows).difference(&l_before).cloned().collect();
            same_seqs(&follower, &influx, &unsent).await.then_some(())
        },
    )
    .await;

    // Back up: its sink sends its backlog from its cursor.
    lr.pause(false);
    let restarted_at = Instant::now();
    leader.restart().await;
    wait_for("every stored sample in InfluxDB", PATIENCE, || async {
        same_seqs(&follower, &influx, &BTreeSet::new())
            .await
            .then_some(())
    })
    .await;
    let catch_up_ms = restarted_at.elapsed().as_millis();

    // Who wrote what: each collector exactly the samples it stored, the
    // restarted one those after its cursor, none by both.
    let rows = stored_rows(&url).await;
    let stored_by = |node: &str| -> BTreeSet<Key> {
        rows.iter()
            .filter(|(_, n, _)| n == node)
            .map(|(_, _, k)| k.clone())
            .collect()
    };
    let (f_usage, f_fleet) = tally(&fr.written());
    let f_set = once(&f_usage, "the survivor");
    assert!(
        f_set == stored_by(fnode),
        "the survivor wrote other samples than its own"
    );
    let (l_usage, l_after_fleet) = tally(&lr.written()[written_before..]);
    let l_after = once(&l_usage, "the restarted collector");
    assert!(
        l_after == after_cursor(&rows),
        "the restarted sink did not resume at its cursor ({at_kill})"
    );
    let l_set: BTreeSet<Key> = l_before.union(&l_after).cloned().collect();
    assert!(
        l_set == stored_by(ln),
        "the killed collector wrote other samples than its own"
    );
    assert!(
        f_set.is_disjoint(&l_set),
        "samples written by both collectors"
    );
    let replayed = l_before.intersection(&l_after).count();
    // The restarted collector follows (unless the survivor, stalled,
    // let its lease expire): the fleet-wide points stay with the survivor.
    let retook = leader_lines(&leader).0 > 1;
    assert!(
        retook || l_after_fleet.is_empty(),
        "a follower wrote {l_after_fleet:?}"
    );
    for c in [&leader, &follower] {
        assert_eq!(c.metric("sobre_sink_points_dropped_total").await, 0);
    }
    // And no usage point under a name the store does not know.
    let r = influx
        .query("SHOW TAG VALUES FROM \"usage\" WITH KEY = \"agent\"")
        .await;
    let tagged = tag_values(&r);
    let with_samples: BTreeSet<&str> = rows.iter().map(|(_, _, (a, _))| a.as_str()).collect();
    assert_eq!(tagged, with_samples, "the agents of the usage points");
    let queries = dashboards_answer(&influx, start_ms).await;

    let n = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    eprintln!(
        "cluster→influx: {} agents with samples, {} samples stored ({} by {ln}, killed; {} by {fnode}); \
         written: {fnode} {} usage + {} fleet-wide points; {ln} {} + {} before the kill, {} + {} after \
         (lease retaken: {retook}); at the kill {ln} held {} unsent samples (gauge said {gauge_at_kill}), \
         {replayed} written again after the restart; relay refused {} requests; \
         fleet-wide points moved {moved_ms} ms after the kill; \
         caught up {catch_up_ms} ms after the restart; {queries} dashboard queries answered",
        rows.iter()
            .map(|(_, _, (a, _))| a)
            .collect::<BTreeSet<_>>()
            .len(),
        rows.len(),
        stored_by(ln).len(),
        stored_by(fnode).len(),
        f_usage.len(),
        n(&f_fleet),
        l_before.len(),
        n(&l_before_fleet),
        l_usage.len(),
        n(&l_after_fleet),
        unsent.len(),
        lr.refused(),
    );
}

/// The (agent, seq) written, each once.
fn once(keys: &[Key], who: &str) -> BTreeSet<Key> {
    let set: BTreeSet<Key> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "{who} wrote samples twice");
    set
}

/// Every query of every dashboard, variables first, as Grafana sends it
/// with every site, group and host; each must answer with data. Returns
/// the number of panel queries.
async fn dashboards_answer(influx: &Server, start_ms: i64) -> usize {
    let range = (start_ms - 300_000, sobre_tests::now_ms() + 60_000);
    let mut all: BTreeMap<&str, String> = ["site", "group", "host"]
        .into_iter()
        .map(|k| (k, ".*".to_owned()))
        .collect();
    all.insert("campaign", regex_escape(cleanup::ID));
    let mut queries = 0;
    for (name, dash) in dashboards() {
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            let q = expand(v["query"].as_str().expect("variable query"), &all, 0, 0);
            let r = influx.query(&q).await;
            assert!(!tag_values(&r).is_empty(), "{name}: {q}: {r}");
        }
        queries += check_dashboard(influx, &name, &dash, &|_| all.clone(), range).await;
    }
    queries
}

/// The values a `SHOW TAG VALUES` answered.
fn tag_values(r: &serde_json::Value) -> BTreeSet<&str> {
    let rows = r["series"][0]["values"].as_array().into_iter().flatten();
    rows.filter_map(|kv| kv[1].as_str()).collect()
}
