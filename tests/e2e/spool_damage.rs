//! A damaged agent spool (issue 21, item 3), with the real agent and
//! collector: the records after a flipped byte are kept and sent, the seqs
//! never go back (a rewound seq would be acked as a duplicate by the
//! collector and the new report never stored), and the agent reports every
//! record it lost in `spool_dropped`, which the collector counts and logs.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use sobre_proto::v1::{Envelope, envelope::Body};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};

use crate::PATIENCE;

/// One record of a segment file: `[len u32][crc u32][seq u64][payload]`.
struct Record {
    seq: u64,
    path: PathBuf,
    payload_at: usize,
    usage: bool,
}

/// The records of every segment, read as the agent wrote them (the test
/// knows the layout; the agent's recovery must not trust it).
fn records(spool: &Path) -> Vec<Record> {
    let mut segs: Vec<PathBuf> = fs::read_dir(spool)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    segs.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    segs.sort();
    let mut out = Vec::new();
    for path in segs {
        let b = fs::read(&path).unwrap_or_default();
        let mut off = 0usize;
        while off + 16 <= b.len() {
            let len = u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"));
            if len == u32::MAX || off + 16 + len as usize > b.len() {
                break; // a seal, or a record still being written
            }
            let seq = u64::from_le_bytes(b[off + 8..off + 16].try_into().expect("8 bytes"));
            let payload = &b[off + 16..off + 16 + len as usize];
            let usage =
                Envelope::decode(payload).is_ok_and(|e| matches!(e.body, Some(Body::Usage(_))));
            out.push(Record {
                seq,
                path: path.clone(),
                payload_at: off + 16,
                usage,
            });
            off += 16 + len as usize;
        }
    }
    out
}

fn acked(spool: &Path) -> BTreeSet<u64> {
    let b = fs::read(spool.join("acks.log")).unwrap_or_default();
    b.chunks_exact(12)
        .map(|c| u64::from_le_bytes(c[..8].try_into().expect("8 bytes")))
        .collect()
}

fn flip(r: &Record) {
    let mut b = fs::read(&r.path).expect("read segment");
    b[r.payload_at + 5] ^= 0x20;
    fs::write(&r.path, b).expect("damage segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_spool_loses_one_record_counted_and_no_seq_goes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let opts = AgentOpts::new("spooldamage", Transport::Mqtt);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    let spool = agent.dir.join("spool");
    c.wait_samples(&agent.id, 20, PATIENCE).await;

    // The collector goes away: what the agent samples now stays pending.
    c.kill9();
    let pending = wait_for("10 pending records in the spool", PATIENCE, || {
        let done = acked(&spool);
        let n = records(&spool)
            .iter()
            .filter(|r| r.usage && !done.contains(&r.seq))
            .count();
        async move { (n >= 10).then_some(n) }
    })
    .await;
    agent.kill9();
    let all = records(&spool);
    let done = acked(&spool);
    c.restart().await;
    let stored_before: BTreeSet<u64> = c.sample_seqs(&agent.id).await.into_iter().collect();
    c.kill9();

    // One record the collector stored, one it never got: both damaged, and
    // the ack log lost too, so the agent cannot know the first was stored.
    let stored_rec = all
        .iter()
        .filter(|r| r.usage && done.contains(&r.seq))
        .nth(5)
        .expect("a stored record");
    let pending_recs: Vec<&Record> = all
        .iter()
        .filter(|r| r.usage && !done.contains(&r.seq))
        .collect();
    let lost = pending_recs[pending_recs.len() / 2];
    flip(stored_rec);
    flip(lost);
    fs::remove_file(spool.join("acks.log")).expect("lose the ack log");
    let highest = all.iter().map(|r| r.seq).max().expect("records");
    assert!(pending >= 10 && stored_before.contains(&stored_rec.seq));

    c.restart().await;
    agent.restart();
    // New reports, above every seq the spool ever held, are stored: none is
    // taken for a duplicate of an old one.
    let seqs = wait_for("new reports stored", PATIENCE, || {
        let c = &c;
        let id = agent.id.clone();
        async move {
            let s = c.sample_seqs(&id).await;
            (s.iter().filter(|&&q| q > highest).count() >= 10).then_some(s)
        }
    })
    .await;
    let stored: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(stored.len(), seqs.len(), "each seq stored once");
    // Every pending record but the damaged one was delivered.
    for r in &pending_recs {
        assert_eq!(stored.contains(&r.seq), r.seq != lost.seq, "seq {}", r.seq);
    }
    let news: Vec<u64> = seqs.iter().copied().filter(|&q| q > highest).collect();
    assert!(news.windows(2).all(|w| w[1] == w[0] + 1), "{news:?}");

    // The agent counts the two records it could not read; the collector
    // shows it on /metrics and in its log.
    let dropped = wait_for("the agent's drops counted", PATIENCE, || {
        let c = &c;
        async move {
            let n = c.metric("sobre_agent_spool_dropped_total").await;
            (n > 0).then_some(n)
        }
    })
    .await;
    assert_eq!(dropped, 2, "{}", agent.log());
    assert!(
        c.log()
            .contains("agent reports envelopes dropped from its spool")
    );
    assert!(agent.log().contains("spool segment is damaged"));
    let status = agent.stop().await;
    assert!(status.success(), "{}", agent.log());
}
