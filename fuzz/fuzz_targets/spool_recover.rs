//! Exercises the agent's spool recovery (`Spool::open`, issue 21) on
//! damaged files, in a folder in memory (/dev/shm when there is one):
//!
//! - `Raw`: arbitrary bytes as a segment, the state, the mark and the ack
//!   log. Opening never panics; when it succeeds, every pending entry reads
//!   back, and the next seq is above every pending one, and above it again
//!   after a reopen.
//! - `Damaged`: a real spool (appends and acks through the public API),
//!   then flips, zeroed runs and truncations anywhere in its files. The
//!   spool opens, no seq is handed out twice, every record whose bytes
//!   were not touched is still pending, and, when only segments were
//!   damaged, every unacked record that is gone is counted as dropped.
//!   (With the state and the mark both damaged, the guarantee is the clock
//!   floor: the next seq is at least the Unix time in ms × 1000.)
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sobre_agent::spool::{Spool, SpoolConfig};

#[derive(Debug, Arbitrary)]
enum Input {
    Raw {
        first_seq: u64,
        segment: Vec<u8>,
        state: Option<Vec<u8>>,
        mark: Option<Vec<u8>>,
        acks: Option<Vec<u8>>,
    },
    Damaged {
        lens: Vec<u8>,
        acks: Vec<u8>,
        hits: Vec<Hit>,
    },
}

#[derive(Debug, Arbitrary)]
struct Hit {
    file: u8,
    at: u16,
    kind: u8,
    run: u8,
}

/// A fresh folder per input, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("sobre-fuzz-spool-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        // Segments of 2 KiB: a few records each.
        max_bytes: 64 * 1024,
        fsync: false,
    }
}

fn payload(seq: u64, len: u8) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| i ^ (seq as u8)));
    p
}

fn raw(first_seq: u64, segment: &[u8], files: [(&str, &Option<Vec<u8>>); 3]) {
    let dir = Scratch::new();
    let name = format!("{first_seq:020}.seg");
    fs::write(dir.0.join(name), segment).expect("write");
    for (name, bytes) in files {
        if let Some(b) = bytes {
            fs::write(dir.0.join(name), b).expect("write");
        }
    }
    let Ok(mut s) = Spool::open(cfg(&dir.0)) else {
        return;
    };
    let pending = s.pending();
    for &q in &pending {
        assert!(s.read(q).expect("a recovered entry reads back").is_some());
    }
    let Ok(n) = s.append(|seq, _| payload(seq, 3)) else {
        return;
    };
    assert!(
        pending.iter().all(|&p| p < n),
        "seq {n} not above {pending:?}"
    );
    let dropped = s.stats().dropped_total;
    drop(s);
    let mut s = Spool::open(cfg(&dir.0)).expect("reopens what it wrote");
    assert!(s.stats().dropped_total >= dropped);
    assert!(s.pending().iter().all(|&p| p <= n));
    if let Ok(m) = s.append(|seq, _| payload(seq, 3)) {
        assert!(m > n, "seq {m} after {n}");
    }
}

/// `(seq, start, end)` of the records of a segment as written.
fn records_of(b: &[u8]) -> Vec<(u64, usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 16 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().expect("4")) as usize;
        if len == u32::MAX as usize || off + 16 + len > b.len() {
            break;
        }
        let seq = u64::from_le_bytes(b[off + 8..off + 16].try_into().expect("8"));
        out.push((seq, off, off + 16 + len));
        off += 16 + len;
    }
    out
}

fn damaged(lens: &[u8], ack: &[u8], hits: &[Hit]) {
    let dir = Scratch::new();
    let mut s = Spool::open(cfg(&dir.0)).expect("open");
    let mut highest = 0;
    for &len in lens.iter().take(64) {
        highest = s.append(|seq, _| payload(seq, len)).expect("append");
    }
    let pending = s.pending();
    let acked: Vec<u64> = ack
        .iter()
        .filter_map(|&i| pending.get(i as usize % pending.len().max(1)).copied())
        .collect();
    s.ack(&acked).expect("ack");
    let unacked: BTreeSet<u64> = s.pending().into_iter().collect();
    let dropped_before = s.stats().dropped_total;
    drop(s);

    let mut files: Vec<PathBuf> = fs::read_dir(&dir.0)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    if files.is_empty() {
        return;
    }
    let mut originals = std::collections::BTreeMap::new();
    let mut only_segments = true;
    let (mut state_hit, mut mark_hit) = (false, false);
    for h in hits.iter().take(4) {
        let path = &files[h.file as usize % files.len()];
        only_segments &= path.extension().is_some_and(|e| e == "seg");
        state_hit |= path.ends_with("state");
        mark_hit |= path.ends_with("mark");
        let mut b = fs::read(path).expect("read");
        originals.entry(path.clone()).or_insert_with(|| b.clone());
        if b.is_empty() {
            continue;
        }
        let at = h.at as usize % b.len();
        match h.kind % 3 {
            0 => b[at] ^= 1 << (h.run % 8),
            1 => b.truncate(at),
            _ => {
                let end = (at + 1 + h.run as usize).min(b.len());
                b[at..end].fill(0);
            }
        }
        fs::write(path, b).expect("damage");
    }
    // Records whose bytes changed, against the files as written.
    let mut touched = BTreeSet::new();
    for (path, before) in &originals {
        if path.extension().is_some_and(|e| e == "seg") {
            let after = fs::read(path).expect("read");
            for (seq, start, end) in records_of(before) {
                if after.get(start..end) != Some(&before[start..end]) {
                    touched.insert(seq);
                }
            }
        }
    }

    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64 * 1000);
    let mut s = Spool::open(cfg(&dir.0)).expect("a damaged spool still opens");
    let now: BTreeSet<u64> = s.pending().into_iter().collect();
    for q in unacked.difference(&touched) {
        assert!(now.contains(q), "intact record {q} lost");
    }
    if only_segments {
        let lost = unacked.difference(&now).count() as u64;
        let counted = s.stats().dropped_total - dropped_before;
        assert!(counted >= lost, "{lost} lost, {counted} counted");
    }
    let n = s.append(|seq, _| payload(seq, 1)).expect("append");
    // With the state and the mark both damaged, what is left is the clock
    // floor (Unix ms × 1000, far ahead of any real append rate); the
    // fuzzer damages and reopens within the same millisecond.
    let from_clock = state_hit && mark_hit && n >= clock;
    assert!(
        n > highest || from_clock,
        "seq {n} handed out again (highest {highest})"
    );
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            first_seq,
            segment,
            state,
            mark,
            acks,
        } => raw(
            first_seq,
            &segment,
            [("state", &state), ("mark", &mark), ("acks.log", &acks)],
        ),
        Input::Damaged { lens, acks, hits } => damaged(&lens, &acks, &hits),
    }
});
