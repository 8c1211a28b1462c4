use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::recover::clock_seq_floor;
use super::*;

const BIG: u64 = 64 * 1024 * 1024;

fn cfg(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        fsync: false,
    }
}

fn open(dir: &Path, max_bytes: u64) -> Spool {
    Spool::open(cfg(dir, max_bytes)).expect("open spool")
}

fn body(seq: u64) -> Vec<u8> {
    format!("envelope #{seq} {}", "x".repeat((seq % 7) as usize * 10)).into_bytes()
}

fn push(s: &mut Spool) -> u64 {
    s.append(|seq, _| body(seq)).expect("append")
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, ".seg")
}

/// What the spool's files really take on disk.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").metadata().expect("metadata").len())
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).expect("list dir") {
        let e = e.expect("dir entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn truncate_file(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("append garbage");
}

fn assert_payloads(s: &Spool, seqs: &[u64]) {
    for &q in seqs {
        assert_eq!(s.read(q).expect("read"), Some(body(q)), "payload of {q}");
    }
}

#[test]
fn append_read_ack_round_trip_survives_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = SpoolConfig {
        fsync: true,
        ..cfg(tmp.path(), BIG)
    };
    let mut s = Spool::open(config.clone()).expect("open");
    let (a, b, c) = (push(&mut s), push(&mut s), push(&mut s));
    assert!(a < b && b < c);
    assert_eq!(s.pending(), vec![a, b, c]);
    assert_payloads(&s, &[a, b, c]);

    assert_eq!(s.ack(&[b]).expect("ack"), 1);
    assert_eq!(s.read(b).expect("read"), None);
    assert_eq!(s.read(c + 1000).expect("read"), None);
    assert_eq!(s.read(0).expect("read"), None);
    assert_eq!(s.pending(), vec![a, c]);
    assert_eq!(s.oldest_pending(), Some(a));
    let st = s.stats();
    assert_eq!(st.pending, 2);
    assert_eq!(st.pending_bytes, (body(a).len() + body(c).len()) as u64);
    assert_eq!(st.disk_bytes, dir_bytes(tmp.path()));
    assert_eq!(st.dropped_total, 0);
    drop(s);

    let s = Spool::open(config).expect("reopen");
    assert_eq!(s.pending(), vec![a, c]);
    assert_payloads(&s, &[a, c]);
    assert_eq!(s.read(b).expect("read"), None);
    assert_eq!(s.stats().pending_bytes, st.pending_bytes);
    assert_eq!(s.stats().disk_bytes, dir_bytes(tmp.path()));
}

#[test]
fn pending_is_in_increasing_order_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 1 KiB segments: 100 entries span many files.
    let mut s = open(tmp.path(), 4096 * 1024);
    s.segment_target = 1024;
    let seqs: Vec<u64> = (0..100).map(|_| push(&mut s)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(segments(tmp.path()).len() > 5);
    assert_eq!(s.pending(), seqs);
    assert!(s.pending_iter().eq(seqs.iter().copied()));
    assert_payloads(&s, &seqs);
}

#[test]
fn seqs_keep_increasing_across_reopen_even_when_everything_was_acked_and_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    let first: Vec<u64> = (0..20).map(|_| push(&mut s)).collect();
    assert_eq!(s.ack(&first).expect("ack"), 20);
    drop(s);

    // Open deletes the fully acked segments and compacts the ack log.
    let mut s = open(tmp.path(), BIG);
    assert!(segments(tmp.path()).is_empty());
    assert_eq!(
        fs::metadata(tmp.path().join("acks.log"))
            .expect("acks")
            .len(),
        0
    );
    assert_eq!(s.stats().pending, 0);
    assert_eq!(s.oldest_pending(), None);
    let n = push(&mut s);
    assert!(n > first[19]);
    s.ack(&[n]).expect("ack");
    drop(s);

    let mut s = open(tmp.path(), BIG);
    assert!(segments(tmp.path()).is_empty());
    let m = push(&mut s);
    assert!(m > n);
    drop(s);
    let mut s = open(tmp.path(), BIG);
    assert_eq!(s.pending(), vec![m]);
    assert!(push(&mut s) > m);
}

#[test]
fn first_seq_of_an_empty_or_wiped_dir_comes_from_the_clock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    let before = clock_seq_floor();
    let mut s = open(&dir, BIG);
    let seq = push(&mut s);
    assert!(seq >= before, "{seq} < {before}");
    assert!(seq <= clock_seq_floor());
    assert!(before >= 1_600_000_000_000 * 1000);
    drop(s);

    fs::remove_dir_all(&dir).expect("wipe");
    let before = clock_seq_floor();
    let mut s = open(&dir, BIG);
    assert!(push(&mut s) >= before);
}

/// A spool with three entries in one segment, to copy and damage.
fn three_entries() -> (tempfile::TempDir, [u64; 3]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    let seqs = [push(&mut s), push(&mut s), push(&mut s)];
    assert_eq!(segments(tmp.path()).len(), 1);
    (tmp, seqs)
}

#[test]
fn a_truncated_last_record_is_cut_away_and_counted_at_every_offset() {
    let (template, [a, b, c]) = three_entries();
    let seg = segments(template.path())[0].clone();
    let name = seg.file_name().expect("name").to_owned();
    let full = fs::metadata(&seg).expect("seg").len();
    let start = full - RECORD_HEADER - body(c).len() as u64;
    for cut in start..full {
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), tmp.path());
        truncate_file(&tmp.path().join(&name), cut);

        let mut s = open(tmp.path(), BIG);
        assert_eq!(s.pending(), vec![a, b], "cut at {cut}");
        assert_payloads(&s, &[a, b]);
        assert_eq!(s.read(c).expect("read"), None);
        // `c` was appended (its append returned): its loss is counted.
        assert_eq!(s.stats().dropped_total, 1, "cut at {cut}");
        // Cut back to whole records, and sealed: its end stays known.
        assert_eq!(
            fs::metadata(tmp.path().join(&name)).expect("seg").len(),
            start + format::SEAL_LEN
        );
        let n = push(&mut s);
        assert!(n > b);
        drop(s);

        let s = open(tmp.path(), BIG);
        assert_eq!(s.pending(), vec![a, b, n], "cut at {cut}");
        assert_payloads(&s, &[a, b, n]);
    }
}

#[test]
fn a_torn_first_record_of_a_new_segment_removes_the_file_but_not_its_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    s.segment_target = 64; // every record gets its own segment
    let a = push(&mut s);
    let b = push(&mut s);
    drop(s);
    let segs = segments(tmp.path());
    assert_eq!(segs.len(), 2);
    for cut in [0, 5, RECORD_HEADER, RECORD_HEADER + 3] {
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(tmp.path(), work.path());
        let torn = work.path().join(segs[1].file_name().expect("name"));
        truncate_file(&torn, cut);
        let mut s = open(work.path(), BIG);
        assert_eq!(s.pending(), vec![a]);
        assert!(!torn.exists(), "cut at {cut}");
        // The file name alone proves that `b` may have been handed out.
        assert!(push(&mut s) > b);
    }
}

#[test]
fn garbage_after_the_last_record_is_cut_away() {
    let (template, [a, b, c]) = three_entries();
    let seg = segments(template.path())[0].clone();
    let name = seg.file_name().expect("name").to_owned();
    let full = fs::metadata(&seg).expect("seg").len();
    let first_record =
        fs::read(&seg).expect("read")[..RECORD_HEADER as usize + body(a).len()].to_vec();

    let mut huge_len = vec![0xff, 0xff, 0xff, 0x7f];
    huge_len.extend_from_slice(&[0; 40]);
    let mut bad_crc = format::encode_record(c + 1, 3, b"abc");
    bad_crc[5] ^= 1;
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, Vec<u8>); 6] = [
        ("zeros", vec![0; 4096]),
        ("noise", noise),
        ("huge length", huge_len),
        ("bad checksum", bad_crc),
        ("repeated old record", first_record),
        ("one byte", vec![7]),
    ];
    for (what, garbage) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), tmp.path());
        append_bytes(&tmp.path().join(&name), &garbage);
        let mut s = open(tmp.path(), BIG);
        assert_eq!(s.pending(), vec![a, b, c], "{what}");
        assert_payloads(&s, &[a, b, c]);
        assert_eq!(s.stats().dropped_total, 0, "{what}");
        assert_eq!(
            fs::metadata(tmp.path().join(&name)).expect("seg").len(),
            full,
            "{what}"
        );
        let n = push(&mut s);
        assert!(n > c);
        drop(s);
        let s = open(tmp.path(), BIG);
        assert_eq!(s.pending(), vec![a, b, c, n], "{what}");
        assert_payloads(&s, &[a, b, c, n]);
    }
}

#[test]
fn a_torn_ack_log_tail_is_cut_away() {
    let (template, [a, b, c]) = three_entries();
    let mut s = open(template.path(), BIG);
    s.ack(&[a]).expect("ack");
    s.ack(&[b]).expect("ack");
    drop(s);
    let acks = template.path().join("acks.log");
    assert_eq!(fs::metadata(&acks).expect("acks").len(), 2 * ACK_RECORD);

    for cut in ACK_RECORD..2 * ACK_RECORD {
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), tmp.path());
        truncate_file(&tmp.path().join("acks.log"), cut);
        let mut s = open(tmp.path(), BIG);
        // The ack of `b` was torn: `b` is pending again (at-least-once).
        assert_eq!(s.pending(), vec![b, c], "cut at {cut}");
        assert_eq!(
            fs::metadata(tmp.path().join("acks.log"))
                .expect("acks")
                .len(),
            ACK_RECORD
        );
        assert_eq!(s.ack(&[b]).expect("ack"), 1);
        drop(s);
        let s = open(tmp.path(), BIG);
        assert_eq!(s.pending(), vec![c], "cut at {cut}");
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(template.path(), tmp.path());
    append_bytes(&tmp.path().join("acks.log"), &[0xAB; 29]);
    let mut s = open(tmp.path(), BIG);
    assert_eq!(s.pending(), vec![c]);
    assert_eq!(s.stats().disk_bytes, dir_bytes(tmp.path()));
    assert_eq!(s.ack(&[c]).expect("ack"), 1);
    drop(s);
    assert_eq!(open(tmp.path(), BIG).pending(), Vec::<u64>::new());
}

#[test]
fn acks_out_of_order_and_duplicates_are_counted_once_and_never_come_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    let seqs: Vec<u64> = (0..10).map(|_| push(&mut s)).collect();
    let acked = [seqs[7], seqs[3], seqs[3], seqs[9], seqs[0]];
    assert_eq!(
        s.ack(&[acked[0], acked[1], acked[2], 12_345, acked[3], acked[4]])
            .expect("ack"),
        4
    );
    assert_eq!(s.ack(&[seqs[3], seqs[7]]).expect("ack"), 0);
    assert_eq!(s.ack(&[]).expect("ack"), 0);
    let rest: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|q| !acked.contains(q))
        .collect();
    assert_eq!(s.pending(), rest);
    assert_eq!(s.oldest_pending(), Some(seqs[1]));
    drop(s);

    let mut s = open(tmp.path(), BIG);
    assert_eq!(s.pending(), rest);
    assert_payloads(&s, &rest);
    for q in acked {
        assert_eq!(s.read(q).expect("read"), None);
    }
    let reversed: Vec<u64> = rest.iter().rev().copied().collect();
    assert_eq!(s.ack(&reversed).expect("ack"), rest.len());
    assert_eq!(s.stats().pending_bytes, 0);
    drop(s);
    assert_eq!(open(tmp.path(), BIG).stats().pending, 0);
}

#[test]
fn floor_passed_to_build_is_the_oldest_pending_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    let append = |s: &mut Spool| {
        let mut seen = None;
        let seq = s
            .append(|seq, floor| {
                seen = Some((seq, floor));
                body(seq)
            })
            .expect("append");
        let (built, floor) = seen.expect("build was called");
        assert_eq!(built, seq);
        floor
    };
    let a_floor = append(&mut s);
    let a = s.pending()[0];
    assert_eq!(a_floor, a);
    assert_eq!(append(&mut s), a);
    let b = s.pending()[1];
    assert_eq!(append(&mut s), a);
    let c = s.pending()[2];
    s.ack(&[b]).expect("ack");
    assert_eq!(append(&mut s), a);
    s.ack(&[a]).expect("ack");
    assert_eq!(append(&mut s), c);
    let pending = s.pending();
    s.ack(&pending).expect("ack");
    let next_floor = append(&mut s);
    let d = s.pending()[0];
    assert_eq!(next_floor, d);
    drop(s);
    let mut s = open(tmp.path(), BIG);
    assert_eq!(append(&mut s), d);
}

#[test]
fn a_full_spool_drops_the_oldest_entries_counts_them_exactly_and_remembers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let max = 4096;
    let mut s = open(tmp.path(), max);
    let mut model: BTreeMap<u64, ()> = BTreeMap::new();
    let mut dropped = 0u64;
    for i in 0..300u64 {
        let seq = push(&mut s);
        model.insert(seq, ());
        if i % 3 == 0 {
            assert_eq!(s.ack(&[seq]).expect("ack"), 1);
            model.remove(&seq);
        }
        let pending = s.pending();
        let gone: Vec<u64> = model
            .keys()
            .copied()
            .filter(|q| !pending.contains(q))
            .collect();
        if let (Some(&newest_gone), Some(&oldest)) = (gone.last(), pending.first()) {
            assert!(
                newest_gone < oldest,
                "dropped {newest_gone} but kept older {oldest}"
            );
        }
        for q in &gone {
            model.remove(q);
        }
        dropped += gone.len() as u64;
        assert_eq!(pending, model.keys().copied().collect::<Vec<_>>());
        let st = s.stats();
        assert_eq!(st.dropped_total, dropped);
        assert!(st.disk_bytes <= max, "{} > {max}", st.disk_bytes);
        assert_eq!(st.disk_bytes, dir_bytes(tmp.path()));
    }
    assert!(dropped > 100, "only {dropped} dropped");
    assert!(model.contains_key(&s.pending()[s.pending().len() - 1]));
    let pending = s.pending();
    drop(s);

    let mut s = open(tmp.path(), max);
    assert_eq!(s.pending(), pending);
    assert_payloads(&s, &pending);
    assert_eq!(s.stats().dropped_total, dropped);
    // Lowering max_bytes drops more at open, and counts it.
    drop(s);
    s = open(tmp.path(), 1024);
    assert!(s.stats().disk_bytes <= 1024);
    assert!(dir_bytes(tmp.path()) <= 1024);
    assert_eq!(
        s.stats().dropped_total,
        dropped + (pending.len() - s.pending().len()) as u64
    );
}

#[test]
fn steady_send_and_ack_frees_segments_and_compacts_the_ack_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), BIG);
    s.segment_target = 4096;
    let acks = tmp.path().join("acks.log");
    let mut max_ack_log = 0;
    for _ in 0..5000 {
        let seq = push(&mut s);
        assert_eq!(s.ack(&[seq]).expect("ack"), 1);
        assert!(segments(tmp.path()).len() <= 2);
        max_ack_log = max_ack_log.max(fs::metadata(&acks).expect("acks").len());
    }
    // Compacted down whenever it exceeds 2 × live acks + 1024 records.
    assert!(
        max_ack_log <= (2 * 100 + 1024 + 1) * ACK_RECORD,
        "{max_ack_log}"
    );
    assert!(fs::metadata(&acks).expect("acks").len() < 5000 * ACK_RECORD);
    assert_eq!(s.stats().pending, 0);
    assert_eq!(s.stats().disk_bytes, dir_bytes(tmp.path()));
}

/// A spool filled to the brim: one more 100-byte envelope would drop the
/// oldest segment.
fn full_spool(dir: &Path, max: u64) -> Spool {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut s = open(scratch.path(), max);
    let mut fits = 0;
    while s.stats().dropped_total == 0 {
        s.append(|_, _| vec![7; 100]).expect("append");
        fits += 1;
    }
    let mut s = open(dir, max);
    for _ in 1..fits {
        s.append(|_, _| vec![7; 100]).expect("append");
    }
    assert_eq!(s.stats().dropped_total, 0);
    s
}

#[test]
fn acks_never_push_a_full_spool_over_max_bytes() {
    let max = 4096;
    // Newest first: a segment is freed only when its oldest entry is acked,
    // so the ack log grows while the segments stay.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = full_spool(tmp.path(), max);
    let pending = s.pending();
    let (last, rest) = pending.split_last().expect("entries");
    for q in rest.iter().rev() {
        s.ack(&[*q]).expect("ack");
        assert!(
            s.stats().disk_bytes <= max,
            "{} > {max}",
            s.stats().disk_bytes
        );
        assert_eq!(s.stats().disk_bytes, dir_bytes(tmp.path()));
    }
    assert_eq!(s.pending(), vec![*last]);

    // Everything but the oldest entry of each segment: nothing can be freed.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = full_spool(tmp.path(), max);
    let firsts: Vec<u64> = s.segments.iter().map(|seg| seg.first_seq).collect();
    assert!(firsts.len() > 2);
    let others: Vec<u64> = s
        .pending()
        .into_iter()
        .filter(|q| !firsts.contains(q))
        .collect();
    assert_eq!(s.ack(&others).expect("ack"), others.len());
    assert_eq!(s.segments.len(), firsts.len());
    assert!(
        s.stats().disk_bytes <= max,
        "{} > {max}",
        s.stats().disk_bytes
    );
    assert_eq!(s.stats().disk_bytes, dir_bytes(tmp.path()));
    // And the next append still fits by dropping the oldest segment only.
    s.append(|_, _| vec![7; 100]).expect("append");
    assert_eq!(s.stats().dropped_total, 1);
    assert!(s.stats().disk_bytes <= max);
}

#[test]
fn a_drop_interrupted_before_the_delete_is_not_counted_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let max = 4096;
    let mut s = open(tmp.path(), max);
    let snapshot = loop {
        let oldest = segments(tmp.path())
            .first()
            .map(|p| (p.clone(), fs::read(p).expect("read seg")));
        push(&mut s);
        if s.stats().dropped_total > 0 {
            break oldest.expect("a segment was dropped");
        }
    };
    let (pending, dropped) = (s.pending(), s.stats().dropped_total);
    drop(s);
    // As if killed after `state` recorded the drop but before the unlink.
    fs::write(&snapshot.0, &snapshot.1).expect("restore");
    let s = open(tmp.path(), max);
    assert!(!snapshot.0.exists());
    assert_eq!(s.pending(), pending);
    assert_eq!(s.stats().dropped_total, dropped);
}

#[test]
fn an_unwritable_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"x").expect("write");
    let dir = file.join("spool");
    let err = Spool::open(cfg(&dir, BIG)).expect_err("must fail");
    assert!(matches!(err, SpoolError::CreateDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("cannot create the spool directory"), "{msg}");
}

#[test]
fn bad_sizes_are_clear_errors_and_spend_no_reusable_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = Spool::open(cfg(tmp.path(), MIN_MAX_BYTES - 1)).expect_err("too small");
    assert!(
        matches!(err, SpoolError::MaxBytesTooSmall { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("raise the spool's max_bytes"));

    let mut s = open(tmp.path(), MIN_MAX_BYTES);
    let a = push(&mut s);
    let mut big_seq = 0;
    let err = s
        .append(|seq, _| {
            big_seq = seq;
            vec![0; MIN_MAX_BYTES as usize]
        })
        .expect_err("too large");
    assert!(matches!(err, SpoolError::TooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()));
    assert_eq!(s.pending(), vec![a]);
    assert!(push(&mut s) > big_seq);
    // The largest accepted envelope fits by dropping everything else.
    let max_len = s.max_payload_len() as usize;
    let c = s.append(|_, _| vec![1; max_len]).expect("largest");
    assert_eq!(s.pending(), vec![c]);
    assert!(s.stats().disk_bytes <= MIN_MAX_BYTES);
}

#[test]
fn corruption_after_open_is_reported_by_read() {
    let (tmp, [a, b, _]) = three_entries();
    let s = open(tmp.path(), BIG);
    let seg = segments(tmp.path())[0].clone();
    let mut bytes = fs::read(&seg).expect("read");
    let in_b = RECORD_HEADER as usize * 2 + body(a).len() + 2;
    bytes[in_b] ^= 0xFF;
    fs::write(&seg, &bytes).expect("write");
    let err = s.read(b).expect_err("corrupt");
    assert!(matches!(err, SpoolError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&seg.display().to_string()));
    assert_payloads(&s, &[a]);
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Acks the pending entries at these positions (modulo), plus an unknown seq.
    Ack(Vec<usize>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..400).prop_map(Op::Append),
        3 => proptest::collection::vec(any::<usize>(), 0..4).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

fn payload_for(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_add(i * 31) as u8)
        .collect()
}

/// Runs `ops` against a spool and a `BTreeMap` model. With a small
/// `max_bytes`, entries the spool dropped are removed from the model after
/// checking that they were the oldest and that `dropped_total` counts them.
fn run_model(ops: Vec<Op>, max_bytes: u64) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = open(tmp.path(), max_bytes);
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut last_seq = 0;
    let mut dropped = 0;
    for op in ops {
        match op {
            Op::Append(len) => {
                let mut floor = None;
                let seq = s
                    .append(|seq, f| {
                        floor = Some(f);
                        payload_for(seq, len)
                    })
                    .expect("append");
                prop_assert!(seq > last_seq);
                // The oldest entry held when the envelope was built, never
                // above anything the spool still holds afterwards.
                let floor = floor.expect("build was called");
                prop_assert_eq!(floor, model.keys().next().copied().unwrap_or(seq));
                prop_assert!(s.oldest_pending().is_none_or(|o| floor <= o));
                last_seq = seq;
                model.insert(seq, payload_for(seq, len));
            }
            Op::Ack(picks) => {
                let pending = s.pending();
                let mut seqs: Vec<u64> = picks
                    .iter()
                    .filter(|_| !pending.is_empty())
                    .map(|p| pending[p % pending.len()])
                    .collect();
                seqs.push(last_seq + 1_000);
                let expected = seqs.iter().filter(|q| model.remove(q).is_some()).count();
                prop_assert_eq!(s.ack(&seqs).expect("ack"), expected);
            }
            Op::Reopen => {
                drop(s);
                s = open(tmp.path(), max_bytes);
            }
        }
        let pending = s.pending();
        let gone: Vec<u64> = model
            .keys()
            .copied()
            .filter(|q| !pending.contains(q))
            .collect();
        if let (Some(newest_gone), Some(oldest)) = (gone.last(), pending.first()) {
            prop_assert!(newest_gone < oldest);
        }
        for q in &gone {
            model.remove(q);
        }
        dropped += gone.len() as u64;
        prop_assert_eq!(&pending, &model.keys().copied().collect::<Vec<_>>());
        for (q, p) in &model {
            let read = s.read(*q).expect("read");
            prop_assert_eq!(read.as_ref(), Some(p));
        }
        let st = s.stats();
        prop_assert_eq!(st.pending, model.len() as u64);
        prop_assert_eq!(
            st.pending_bytes,
            model.values().map(|p| p.len() as u64).sum::<u64>()
        );
        prop_assert_eq!(st.dropped_total, dropped);
        prop_assert!(st.disk_bytes <= max_bytes);
        prop_assert_eq!(st.disk_bytes, dir_bytes(tmp.path()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn matches_a_btreemap_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(ops, BIG)?;
    }

    #[test]
    fn matches_the_model_when_bounded(
        ops in proptest::collection::vec(op(), 1..80),
        max_bytes in 1024u64..6000,
    ) {
        run_model(ops, max_bytes)?;
    }
}
