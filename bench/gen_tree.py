#!/usr/bin/env python3
# Vendored from the team's shared benchmark tools (shared/bench/gen_tree.py) so
# that the tests that use it run from any clone.
"""Generate a deterministic, realistic synthetic file tree for storage-scan benchmarks.

Models a municipal file share / workstation home dirs:
  * heavy-tailed file sizes: a small share of empty files, a log-normal body
    (median ~2 KiB) and a Pareto tail (>=64 KiB) capped at --max-size;
  * nested directories (users/<u>/..., services/<dept>/...), Zipf-like
    files-per-directory, French-ish and accented (UTF-8) names;
  * exact duplicates in groups (--dup-frac of all files are *redundant copies*),
    placed as "Copie de X", "X (1)", same name in a "- Copie" backup dir, or random;
  * a few redundant copies made as hard links (not reclaimable), symlinks,
    broken symlinks, empty dirs, temp-like files (~$x.docx, .tmp, .bak);
  * "decoys": same size, differing only in the last byte (defeats prefix
    stage) or only in a middle byte (defeats prefix+suffix stages);
  * mtimes spread over ~8 years (fixed reference date, so runs are reproducible).

A manifest (JSON) with ground truth (dup groups, redundant bytes, ...) is written
next to the tree (NOT inside it), default <root>.manifest.json.

Usage:
  python3 gen_tree.py $SCRATCH/bench/tree --files 200000 --seed 42
  python3 gen_tree.py $SCRATCH/bench/tree --dry-run          # sizes/stats only
Content is pseudo-random (incompressible); stdlib only, Python >= 3.9.
"""
import argparse
import json
import math
import os
import random
import sys
import time

KIB = 1024
MIB = 1024 * 1024
REF_NOW = 1735689600  # 2025-01-01T00:00:00Z, fixed for reproducibility

DIR_WORDS = [
    "Documents", "Projets", "Archives", "Compta", "RH", "Marchés", "Urbanisme",
    "Réunions", "Photos", "Scans", "Budget", "2019", "2020", "2021", "2022",
    "2023", "2024", "Courriers", "Délibérations", "Voirie", "Écoles", "Culture",
    "Sport", "Élections", "Etat-civil", "Export", "Sauvegarde", "Ancien", "Divers",
    "Modèles", "Factures", "Contrats", "Plans", "Presse", "Communication", "Tmp",
]
DEPTS = ["DSI", "Finances", "RH", "Urbanisme", "Voirie", "Culture", "Education",
         "Sports", "EtatCivil", "Communication", "Juridique", "Police", "Espaces-verts"]
FILE_WORDS = [
    "rapport", "note", "compte-rendu", "facture", "devis", "plan", "photo", "scan",
    "budget", "courrier", "arrêté", "délibération", "tableau", "export", "présentation",
    "convention", "contrat", "planning", "liste", "inventaire", "bilan", "projet",
]
# (extension, weight) by size class; chosen after the size is drawn.
EXT_BY_CLASS = {
    "tiny": [(".txt", 4), (".csv", 2), (".log", 3), (".ini", 1), (".json", 1), (".lnk", 1), (".tmp", 1), (".xml", 1)],
    "small": [(".docx", 4), (".xlsx", 3), (".pdf", 3), (".txt", 2), (".odt", 2), (".csv", 1), (".html", 1), (".bak", 1), (".msg", 1)],
    "medium": [(".pdf", 4), (".jpg", 4), (".png", 2), (".docx", 2), (".pptx", 1), (".xlsx", 1), (".zip", 1), (".eml", 1)],
    "large": [(".jpg", 3), (".pdf", 2), (".zip", 2), (".mp4", 1), (".pptx", 1), (".tif", 1), (".iso", 0.2), (".msi", 0.5)],
}


def wchoice(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for v, w in pairs:
        x -= w
        if x <= 0:
            return v
    return pairs[-1][0]


def draw_size(rng, a):
    u = rng.random()
    if u < a.empty_frac:
        return 0
    if u < a.empty_frac + a.tail_frac:
        # Pareto tail: xm * U^(-1/alpha)
        s = a.tail_min * (1.0 - rng.random()) ** (-1.0 / a.tail_alpha)
    else:
        s = math.exp(rng.gauss(math.log(a.median), a.sigma))
    return max(1, min(int(s), a.max_size))


def size_class(sz):
    if sz < 2 * KIB:
        return "tiny"
    if sz < 128 * KIB:
        return "small"
    if sz < 1 * MIB:
        return "medium"
    return "large"


def build_dirs(rng, a):
    """Return list of relative dir paths (root excluded) and a parallel weight list."""
    dirs, weights = [], []
    n_users = max(1, a.files // 800)
    tops = [f"users/u{u:04d}" for u in range(n_users)] + [f"services/{d}" for d in DEPTS]
    for t in tops:
        dirs.append(t)
        weights.append(0.2)
    target_dirs = max(len(tops) + 1, a.files // a.files_per_dir)
    while len(dirs) < target_dirs:
        parent = dirs[rng.randrange(len(dirs))]
        depth = parent.count("/")
        if depth >= a.max_depth and rng.random() < 0.9:
            continue
        name = rng.choice(DIR_WORDS)
        if rng.random() < 0.35:
            name = f"{name}_{rng.randrange(1000)}"
        d = f"{parent}/{name}"
        dirs.append(d)
        # Zipf-ish directory popularity: a few dirs hold thousands of files
        weights.append((1.0 - rng.random()) ** (-1.0 / 1.1))
    # de-duplicate names while keeping order
    seen, out_d, out_w = set(), [], []
    for d, w in zip(dirs, weights):
        if d not in seen:
            seen.add(d)
            out_d.append(d)
            out_w.append(w)
    return out_d, out_w


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("--files", type=int, default=200_000, help="total regular-file entries incl. copies/hard links")
    p.add_argument("--dup-frac", type=float, default=0.15, help="fraction of files that are redundant copies")
    p.add_argument("--hardlink-frac", type=float, default=0.03, help="fraction of redundant copies made as hard links")
    p.add_argument("--decoy-frac", type=float, default=0.01, help="fraction of files that are near-duplicate decoys")
    p.add_argument("--empty-frac", type=float, default=0.02)
    p.add_argument("--median", type=float, default=2 * KIB)
    p.add_argument("--sigma", type=float, default=1.7)
    p.add_argument("--tail-frac", type=float, default=0.03)
    p.add_argument("--tail-min", type=float, default=64 * KIB)
    p.add_argument("--tail-alpha", type=float, default=1.2)
    p.add_argument("--max-size", type=int, default=4 * MIB)
    p.add_argument("--max-total", type=int, default=4 * 1024 * MIB, help="abort if planned bytes exceed this")
    p.add_argument("--files-per-dir", type=int, default=17)
    p.add_argument("--max-depth", type=int, default=9)
    p.add_argument("--empty-dirs", type=int, default=300)
    p.add_argument("--symlinks", type=int, default=200, help="valid symlinks; as many again broken")
    p.add_argument("--years", type=float, default=8.0, help="max file age")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--manifest", default=None)
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()

    rng = random.Random(a.seed)
    t0 = time.time()
    dirs, dweights = build_dirs(rng, a)
    cum = []
    acc = 0.0
    for w in dweights:
        acc += w
        cum.append(acc)

    import bisect

    def pick_dir():
        return dirs[bisect.bisect_left(cum, rng.random() * acc)]

    n_copies = int(a.files * a.dup_frac)
    n_decoys = int(a.files * a.decoy_frac)
    n_unique = a.files - n_copies - n_decoys

    # plan originals: (content_id, size, relpath, mtime)
    originals = []
    used = set()

    def uniq(path):
        base, ext = os.path.splitext(path)
        k = 1
        while path in used:
            path = f"{base}_{k}{ext}"
            k += 1
        used.add(path)
        return path

    def age_mtime():
        # most files are recent-ish, long tail up to --years
        days = min(a.years * 365.0, rng.lognormvariate(math.log(300), 1.0))
        return REF_NOW - int(days * 86400) - rng.randrange(86400)

    for cid in range(n_unique):
        sz = draw_size(rng, a)
        cls = size_class(sz)
        ext = wchoice(rng, EXT_BY_CLASS[cls])
        stem = f"{rng.choice(FILE_WORDS)}_{rng.randrange(100000)}"
        if ext in (".docx", ".xlsx") and rng.random() < 0.02:
            stem = "~$" + stem  # Office lock/temp file
        originals.append((cid, sz, uniq(f"{pick_dir()}/{stem}{ext}"), age_mtime()))

    # plan redundant copies in groups: group gets 1 + geometric extra copies
    copies = []  # (cid, size, relpath, mtime, hardlink_to_relpath or None)
    nonempty = [o for o in originals if o[1] > 0]
    while len(copies) < n_copies:
        cid, sz, path, mt = nonempty[rng.randrange(len(nonempty))]
        k = 1
        while rng.random() < 0.4 and k < 9:
            k += 1
        d, fname = path.rsplit("/", 1)
        stem, ext = os.path.splitext(fname)
        for j in range(k):
            if len(copies) >= n_copies:
                break
            mode = rng.random()
            if mode < 0.30:
                np_ = f"{d}/{stem} ({j + 1}){ext}" if rng.random() < 0.5 else f"{d}/Copie de {stem}{ext}"
            elif mode < 0.70:
                np_ = f"{d} - Copie/{fname}" if rng.random() < 0.5 else f"{pick_dir()}/{fname}"
            else:
                np_ = f"{pick_dir()}/{rng.choice(FILE_WORDS)}_{rng.randrange(100000)}{ext}"
            hl = path if rng.random() < a.hardlink_frac else None
            copies.append((cid, sz, uniq(np_), mt + rng.randrange(1, 400 * 86400), hl))

    # decoys: copy of an original (size >= 64 KiB so prefix+suffix blocks differ
    # from the tail region) with the last byte or a middle byte flipped
    decoys = []  # (cid, size, relpath, mtime, flip_offset)
    big = [o for o in originals if o[1] >= 64 * KIB] or nonempty
    for _ in range(n_decoys):
        cid, sz, path, mt = big[rng.randrange(len(big))]
        off = sz - 1 if rng.random() < 0.5 else sz // 2
        d, fname = path.rsplit("/", 1)
        stem, ext = os.path.splitext(fname)
        decoys.append((cid, sz, uniq(f"{d}/{stem}_v2{ext}"), mt + 86400, off))

    planned = sum(o[1] for o in originals) + sum(c[1] for c in copies if c[4] is None) + sum(x[1] for x in decoys)
    sizes = sorted(o[1] for o in originals)

    def pct(q):
        return sizes[min(len(sizes) - 1, int(q * len(sizes)))]

    # ground truth for duplicate finders: content groups of distinct inodes,
    # hard links and empty files excluded. Files <= 8 B are keyed by their bytes
    # (their content is a truncated id and may collide, as tiny files do in reality).
    def gkey(cid, sz, variant=None):
        return (sz, cid.to_bytes(8, "little")[:sz]) if sz <= 8 else (cid, variant)

    groups = {}
    for cid, sz, path, mt in originals:
        groups.setdefault(gkey(cid, sz), [sz, 0])[1] += 1
    for cid, sz, path, mt, hl in copies:
        if hl is None:
            groups[gkey(cid, sz)][1] += 1
    for cid, sz, path, mt, off in decoys:
        groups.setdefault(gkey(cid, sz, off), [sz, 0])[1] += 1
    dup_groups = {c: v for c, v in groups.items() if v[1] > 1 and v[0] > 0}
    manifest = {
        "seed": a.seed,
        "args": vars(a),
        "dirs_with_files_planned": len(dirs),
        "files_total": len(originals) + len(copies) + len(decoys),
        "unique_originals": len(originals),
        "redundant_copies": len(copies),
        "hardlinked_copies": sum(1 for c in copies if c[4] is not None),
        "decoys": len(decoys),
        "empty_files": sum(1 for o in originals if o[1] == 0),
        "planned_bytes_on_disk_apparent": planned,
        "size_percentiles_originals": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": sizes[-1]},
        "mean_size_originals": sum(sizes) / len(sizes),
        "expected_dup_groups": len(dup_groups),
        "expected_files_in_dup_groups": sum(v[1] for v in dup_groups.values()),
        "expected_redundant_bytes": sum(v[0] * (v[1] - 1) for v in dup_groups.values()),
    }
    if planned > a.max_total:
        print(json.dumps(manifest, indent=1))
        sys.exit(f"planned {planned} bytes > --max-total {a.max_total}; lower --files or sizes")
    if a.dry_run:
        print(json.dumps(manifest, indent=1))
        return

    root = a.root.rstrip("/")
    os.makedirs(root, exist_ok=True)
    pool_rng = random.Random(a.seed ^ 0x5EED)
    pool = pool_rng.randbytes(a.max_size + 64 * KIB)
    made_dirs = set()

    def ensure_dir(rel):
        if rel not in made_dirs:
            os.makedirs(f"{root}/{rel}", exist_ok=True)
            made_dirs.add(rel)

    def content(cid, sz):
        if sz == 0:
            return b""
        r = random.Random(cid * 2654435761 + a.seed)
        off = r.randrange(len(pool) - sz + 1) if sz < len(pool) else 0
        head = cid.to_bytes(8, "little") + b"\x00CID\x00\x00\x00\x00"
        data = head[:sz] + pool[off + min(sz, 16):off + sz]
        return data

    def write(rel, data, mt):
        d = rel.rsplit("/", 1)[0]
        ensure_dir(d)
        path = f"{root}/{rel}"
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (mt + rng.randrange(0, 30 * 86400), mt))

    by_cid = {}
    for cid, sz, rel, mt in originals:
        write(rel, content(cid, sz), mt)
        by_cid[cid] = rel
    for cid, sz, rel, mt, hl in copies:
        if hl is None:
            write(rel, content(cid, sz), mt)
        else:
            ensure_dir(rel.rsplit("/", 1)[0])
            os.link(f"{root}/{hl}", f"{root}/{rel}")
    for cid, sz, rel, mt, off in decoys:
        data = bytearray(content(cid, sz))
        data[off] ^= 0xFF
        write(rel, bytes(data), mt)
    for i in range(a.empty_dirs):
        ensure_dir(f"{pick_dir()}/Nouveau dossier {i}")
    all_rel = [o[2] for o in originals if o[1] > 0]
    for i in range(a.symlinks):
        tgt = all_rel[rng.randrange(len(all_rel))]
        d = pick_dir()
        ensure_dir(d)
        os.symlink(f"{root}/{tgt}", f"{root}/{d}/raccourci_{i}.lnk")
        os.symlink(f"{root}/{tgt}.deleted", f"{root}/{d}/lien_mort_{i}.lnk")
    manifest["dirs_created"] = len(made_dirs)
    manifest["empty_dirs"] = a.empty_dirs
    manifest["symlinks_valid"] = a.symlinks
    manifest["symlinks_broken"] = a.symlinks
    manifest["generation_seconds"] = round(time.time() - t0, 1)
    mpath = a.manifest or f"{root}.manifest.json"
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps({k: v for k, v in manifest.items() if k != "args"}, indent=1))


if __name__ == "__main__":
    main()
