//! Damage on disk (issue 21): a spool damaged anywhere still opens, never
//! hands a seq out twice, keeps every record it can read and counts every
//! unacked one it cannot as dropped, once.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::format::{self, RECORD_HEADER, SEAL_MARK};
use super::*;

/// A directory in memory when the machine has one: thousands of spools
/// are opened here.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 64 * 1024 * 1024,
        fsync: false,
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(cfg(dir)).expect("open spool")
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = format!("#{seq}:").into_bytes();
    p.extend((0..len).map(|i| (seq as usize * 31 + i) as u8));
    p
}

/// A spool of `lens.len()` records in segments of about `target` bytes,
/// with the records at positions `ack` (modulo) acked. Returns the
/// appended seqs with their payload lengths, and the acked seqs.
struct Fixture {
    dir: tempfile::TempDir,
    appended: Vec<(u64, usize)>,
    acked: BTreeSet<u64>,
}

impl Fixture {
    fn new(lens: &[usize], target: u64, ack: &[usize]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.segment_target = target;
        let appended: Vec<(u64, usize)> = lens
            .iter()
            .map(|&len| (s.append(|seq, _| payload(seq, len)).expect("append"), len))
            .collect();
        let acked: BTreeSet<u64> = ack
            .iter()
            .map(|&i| appended[i % appended.len()].0)
            .collect();
        s.ack(&acked.iter().copied().collect::<Vec<_>>())
            .expect("ack");
        drop(s);
        Fixture {
            dir,
            appended,
            acked,
        }
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().ends_with(".seg"))
            .collect();
        v.sort();
        v
    }

    fn unacked(&self) -> BTreeSet<u64> {
        let all = self.appended.iter().map(|a| a.0);
        all.filter(|s| !self.acked.contains(s)).collect()
    }

    fn len_of(&self, seq: u64) -> usize {
        self.appended.iter().find(|a| a.0 == seq).map_or(0, |a| a.1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(u64),
    Cut(u64),
    Zero(u64, u64),
}

fn damage(path: &Path, d: Damage) {
    let mut b = fs::read(path).expect("read");
    let n = b.len() as u64;
    match d {
        Damage::Flip(_) if n == 0 => {}
        Damage::Flip(at) => b[at.min(n - 1) as usize] ^= 0x5a,
        Damage::Cut(at) => b.truncate(at.min(n) as usize),
        Damage::Zero(at, len) => {
            let end = at.saturating_add(len).min(n);
            b[at.min(n) as usize..end as usize].fill(0);
        }
    }
    fs::write(path, b).expect("write");
}

/// `(seq, start, end)` of every record of a clean segment file.
fn records_of(bytes: &[u8]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(hdr) = bytes.get(off..).and_then(|b| b.first_chunk::<16>()) {
        let h = format::decode_header(hdr);
        if h.len == SEAL_MARK {
            break;
        }
        let end = off + RECORD_HEADER as usize + h.len as usize;
        out.push((h.seq, off as u64, end as u64));
        off = end;
    }
    out
}

/// Damages segment `seg` of a copy of `fx` with each of `ds`, opens it and
/// checks every promise; returns how many records were lost.
fn check(fx: &Fixture, ds: &[(usize, Damage)]) -> Result<u64, TestCaseError> {
    let work = scratch();
    for e in fs::read_dir(fx.dir.path()).expect("list") {
        let e = e.expect("entry");
        fs::copy(e.path(), work.path().join(e.file_name())).expect("copy");
    }
    let segs = fx.segments();
    let mut originals = std::collections::BTreeMap::new();
    for &(seg, d) in ds {
        let path = work
            .path()
            .join(segs[seg % segs.len()].file_name().expect("name"));
        if !originals.contains_key(&path) {
            originals.insert(path.clone(), fs::read(&path).expect("read"));
        }
        damage(&path, d);
    }
    let mut lost = BTreeSet::new();
    for (path, before) in &originals {
        let after = fs::read(path).expect("read");
        for (seq, start, end) in records_of(before) {
            if after.get(start as usize..end as usize)
                != Some(&before[start as usize..end as usize])
            {
                lost.insert(seq);
            }
        }
    }
    let unacked = fx.unacked();
    let lost: BTreeSet<u64> = lost.intersection(&unacked).copied().collect();
    let survivors: Vec<u64> = unacked.difference(&lost).copied().collect();

    let mut s = Spool::open(cfg(work.path())).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(s.pending(), survivors.clone(), "{:?}", ds);
    for &q in &survivors {
        let got = s.read(q).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, Some(payload(q, fx.len_of(q))));
    }
    prop_assert_eq!(s.stats().dropped_total, lost.len() as u64, "{:?}", ds);
    let highest = fx.appended.last().map_or(0, |a| a.0);
    let n = s.append(|seq, _| payload(seq, 3)).expect("append");
    prop_assert!(n > highest, "seq {} reused (highest {})", n, highest);
    drop(s);

    // Repaired: a second open finds nothing more to count.
    let mut s = open(work.path());
    let mut again = survivors;
    again.push(n);
    prop_assert_eq!(s.pending(), again);
    prop_assert_eq!(s.stats().dropped_total, lost.len() as u64);
    prop_assert!(s.append(|_, _| vec![1]).expect("append") > n);
    Ok(lost.len() as u64)
}

fn small_fixture() -> Fixture {
    // Three segments: two records (one acked) and a seal, three records
    // and a seal, two records.
    let lens: Vec<usize> = (0..7).map(|i| 4 + (i * 13) % 20).collect();
    Fixture::new(&lens, 100, &[1])
}

#[test]
fn damage_at_every_byte_of_every_segment_is_recovered_and_counted() {
    let fx = small_fixture();
    let segs = fx.segments();
    assert!(segs.len() >= 3, "{} segments", segs.len());
    let mut cases = 0;
    for (i, seg) in segs.iter().enumerate() {
        let len = fs::metadata(seg).expect("stat").len();
        for at in 0..len {
            for d in [Damage::Flip(at), Damage::Cut(at), Damage::Zero(at, 8)] {
                if let Err(e) = check(&fx, &[(i, d)]) {
                    panic!("segment {i} of {}, {d:?}: {e}", segs.len());
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 500, "{cases}");
}

#[test]
fn a_flipped_byte_mid_segment_no_longer_drops_later_records_uncounted() {
    let fx = Fixture::new(&[20; 6], 1 << 20, &[]);
    let seqs: Vec<u64> = fx.appended.iter().map(|a| a.0).collect();
    let rec = records_of(&fs::read(&fx.segments()[0]).expect("read"));
    // In the payload of the second of six records, all in one segment.
    let lost = check(&fx, &[(0, Damage::Flip(rec[1].1 + 20))]).expect("recovered");
    assert_eq!(lost, 1);
    let s = open(fx.dir.path());
    assert_eq!(s.pending(), seqs, "the fixture itself is intact");
}

#[test]
fn a_corrupt_first_record_no_longer_rewinds_next_seq() {
    let fx = Fixture::new(&[20; 4], 1 << 20, &[]);
    assert_eq!(check(&fx, &[(0, Damage::Flip(3))]).expect("recovered"), 1);
    assert_eq!(
        check(&fx, &[(0, Damage::Zero(0, 16))]).expect("recovered"),
        1
    );
}

#[test]
fn an_empty_segment_no_longer_rewinds_next_seq() {
    let fx = Fixture::new(&[20; 9], 120, &[]);
    let segs = fx.segments().len();
    assert!(segs >= 3);
    // The newest, then the oldest and a middle one, emptied.
    for seg in [segs - 1, 0, 1] {
        check(&fx, &[(seg, Damage::Cut(0))]).expect("recovered");
    }
}

#[test]
fn a_lost_state_file_neither_resets_dropped_nor_rewinds_seqs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = SpoolConfig {
        max_bytes: 4096,
        ..cfg(tmp.path())
    };
    let mut s = Spool::open(small.clone()).expect("open");
    let mut last = 0;
    while s.stats().dropped_total < 5 {
        last = s.append(|seq, _| payload(seq, 100)).expect("append");
    }
    let dropped = s.stats().dropped_total;
    drop(s);
    fs::remove_file(tmp.path().join(format::STATE_FILE)).expect("delete state");
    let mut s = Spool::open(small.clone()).expect("reopen");
    assert_eq!(s.stats().dropped_total, dropped);
    assert!(s.append(|_, _| vec![1]).expect("append") > last);
    drop(s);
    // The state file corrupt, and the mark file gone too: the clock.
    fs::write(tmp.path().join(format::STATE_FILE), b"garbage").expect("write");
    fs::remove_file(tmp.path().join(format::MARK_FILE)).expect("delete mark");
    let mut s = Spool::open(small).expect("reopen");
    assert!(s.append(|_, _| vec![1]).expect("append") > last);
}

#[test]
fn a_torn_write_that_never_returned_is_cut_away_uncounted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path());
    let a = s.append(|seq, _| payload(seq, 10)).expect("append");
    let mark = fs::read(tmp.path().join(format::MARK_FILE)).expect("mark");
    let b = s.append(|seq, _| payload(seq, 50)).expect("append");
    drop(s);
    // As if killed while writing `b`: half its record, the mark before it.
    let seg = tmp.path().join(format::segment_name(a));
    let len = fs::metadata(&seg).expect("stat").len();
    damage(&seg, Damage::Cut(len - 30));
    fs::write(tmp.path().join(format::MARK_FILE), mark).expect("restore mark");
    let mut s = open(tmp.path());
    assert_eq!(s.pending(), vec![a]);
    assert_eq!(s.stats().dropped_total, 0);
    // `b` never left: its append did not return, so it was not sent and
    // its seq may go to the next envelope.
    assert_eq!(s.append(|_, _| vec![1]).expect("append"), b);
}

#[test]
fn a_restart_leaves_no_gap_in_the_seqs_and_a_damaged_mark_never_reuses_one() {
    let tmp = scratch();
    let mut s = open(tmp.path());
    let a = s.append(|seq, _| payload(seq, 5)).expect("append");
    drop(s);
    let mut s = open(tmp.path());
    let b = s.append(|seq, _| payload(seq, 5)).expect("append");
    assert_eq!(b, a + 1, "the mark is exact: no gap");
    drop(s);
    damage(&tmp.path().join(format::MARK_FILE), Damage::Flip(60));
    // And the newest segment emptied: only the reservation knows `b`.
    damage(&tmp.path().join(format::segment_name(a)), Damage::Cut(0));
    let mut s = open(tmp.path());
    let c = s.append(|seq, _| payload(seq, 5)).expect("append");
    assert!(c > b, "{c} reuses a seq up to {b}");
    assert!(c <= b + 2 * append::RESERVE_BLOCK);
}

#[test]
fn a_damaged_mark_or_ack_log_costs_no_seq_and_no_record() {
    let fx = Fixture::new(&[30; 8], 150, &[2]);
    for (file, d) in [
        (format::MARK_FILE, Damage::Flip(20)),
        (format::MARK_FILE, Damage::Cut(0)),
        (format::ACKS_FILE, Damage::Flip(3)),
        (format::STATE_FILE, Damage::Zero(0, 36)),
    ] {
        let work = tempfile::tempdir().expect("tempdir");
        for e in fs::read_dir(fx.dir.path()).expect("list") {
            let e = e.expect("entry");
            fs::copy(e.path(), work.path().join(e.file_name())).expect("copy");
        }
        damage(&work.path().join(file), d);
        let mut s = open(work.path());
        let pending: BTreeSet<u64> = s.pending().into_iter().collect();
        // A lost ack only makes its entry pending again.
        assert!(fx.unacked().is_subset(&pending), "{file} {d:?}");
        assert_eq!(s.stats().dropped_total, 0, "{file} {d:?}");
        let highest = fx.appended.last().map_or(0, |a| a.0);
        assert!(s.append(|_, _| vec![1]).expect("append") > highest);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn damage_anywhere_in_any_spool_is_recovered_and_counted(
        lens in proptest::collection::vec(0usize..120, 1..24),
        target in 64u64..600,
        ack in proptest::collection::vec(any::<usize>(), 0..6),
        hits in proptest::collection::vec(
            (any::<usize>(), 0u8..3, any::<u64>(), 1u64..64), 1..3),
    ) {
        let fx = Fixture::new(&lens, target, &ack);
        let segs = fx.segments();
        prop_assume!(!segs.is_empty());
        let ds: Vec<(usize, Damage)> = hits
            .iter()
            .map(|&(seg, kind, at, run)| {
                let len = fs::metadata(&segs[seg % segs.len()]).map_or(1, |m| m.len().max(1));
                let at = at % len;
                let d = match kind {
                    0 => Damage::Flip(at),
                    1 => Damage::Cut(at),
                    _ => Damage::Zero(at, run),
                };
                (seg, d)
            })
            .collect();
        check(&fx, &ds)?;
    }
}

#[test]
fn a_corrupt_state_and_a_damaged_mark_slot_no_longer_hand_out_the_last_seq_again() {
    // Found by the spool_recover fuzz target: its payloads and damage.
    let fuzz_payload = |seq: u64, len: u8| {
        let mut p = seq.to_le_bytes().to_vec();
        p.extend((0..len).map(|i| i ^ (seq as u8)));
        p
    };
    let flip = |path: &Path, at: usize, bit: u8| {
        let mut b = fs::read(path).expect("read");
        b[at] ^= 1 << bit;
        fs::write(path, b).expect("write");
    };
    let tmp = scratch();
    let small = SpoolConfig {
        max_bytes: 64 * 1024,
        ..cfg(tmp.path())
    };
    let mut s = Spool::open(small.clone()).expect("open");
    s.append(|seq, _| fuzz_payload(seq, 255)).expect("append");
    let last = s.append(|seq, _| fuzz_payload(seq, 48)).expect("append");
    drop(s);
    let seg = fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".seg"))
        .expect("segment");
    flip(&seg, 333, 3);
    damage(&tmp.path().join(format::STATE_FILE), Damage::Cut(27));
    flip(&tmp.path().join(format::MARK_FILE), 5, 0);
    // The newest record is the damaged one, the state is gone and the
    // mark's current slot too: the other slot is one append behind, and
    // within the same millisecond the clock is no help.
    let mut s = Spool::open(small).expect("open");
    assert_eq!(s.pending(), vec![last - 1]);
    assert_eq!(s.stats().dropped_total, 1);
    let n = s.append(|_, _| vec![1]).expect("append");
    assert!(n > last, "{n} handed out again");
}
