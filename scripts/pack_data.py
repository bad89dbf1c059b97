"""Pack FER2013 and the FER+ votes small enough to travel with the working tree to a remote
GPU machine (scripts/gpu_run.sh).

    python scripts/pack_data.py                      # -> pack/ (git-ignored; ~22 MB)
    python scripts/pack_data.py --unpack pack/bundle/fer2013.bundle   # there: pack/ again

Every training and PublicTest (validation) image of ../shared/data/fer2013 (Kaggle folder
layout) but disgust (which the project drops) is re-encoded as WebP quality 82 under
pack/fer2013/ with the same relative path (suffix .webp); the FER+ votes and mapping are
cut down to those images and the columns the loader reads, with the paths rewritten to
match, so `--data pack/fer2013 --ferplus pack/ferplus` reads the same images and labels as
the originals. The images never enter git.

PrivateTest stays behind (--with-test packs it too): the tracked tree and the pack must
travel together in 64 MiB, and the shipped model is scored here, on the originals. So that
the run there still never trains on a test face, the training images whose pixels equal a
PrivateTest image (the rule `load_dataset` applies when the test split is present) are
left out of the pack as well.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import struct
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _pixels(path: Path) -> bytes:
    with Image.open(path) as im:
        return hashlib.blake2b(im.convert("L").tobytes(), digest_size=16).digest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "fer2013")
    p.add_argument("--ferplus", type=Path, default=SHARED / "ferplus")
    p.add_argument("--out", type=Path, default=ROOT / "pack")
    p.add_argument("--quality", type=int, default=82)
    p.add_argument("--with-test", action="store_true", help="pack PrivateTest too")
    p.add_argument("--unpack", type=Path, metavar="BUNDLE",
                   help="recreate --out's folders from a bundle (on the GPU machine)")
    args = p.parse_args(argv)
    if args.unpack:
        return unpack_bundle(args.unpack, args.out)
    if not (args.data / "train").is_dir() or not (args.ferplus / "kaggle_to_ferplus.csv").is_file():
        print(f"error: {args.data} (train/, test/) and {args.ferplus} (FER+ votes) are needed",
              file=sys.stderr)
        return 2
    files = sorted(f for f in args.data.rglob("*") if f.suffix.lower() in (".jpg", ".png"))
    if not args.with_test:
        test = [f for f in files if f.name.startswith("PrivateTest")]
        held = {_pixels(f) for f in test}
        twins = [f for f in files if f.name.startswith("Training") and _pixels(f) in held]
        files = [f for f in files if f not in set(test) | set(twins)]
        print(f"left out: {len(test)} PrivateTest images and {len(twins)} training images "
              "equal to one of them", flush=True)
    files = [f for f in files if f.parent.name.lower() != "disgust"]
    total = 0
    for i, f in enumerate(files):
        target = (args.out / "fer2013" / f.relative_to(args.data)).with_suffix(".webp")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            im.convert("L").save(target, "WEBP", quality=args.quality, method=6)
        total += target.stat().st_size
        if i % 5000 == 0:
            print(f"{i}/{len(files)} images, {total / 1e6:.1f} MB", flush=True)
    (args.out / "ferplus").mkdir(parents=True, exist_ok=True)
    packed = {str(f.relative_to(args.data)) for f in files}
    with (args.ferplus / "fer2013new.csv").open(newline="") as fh:
        votes = list(csv.reader(fh))
    with (args.ferplus / "kaggle_to_ferplus.csv").open(newline="") as src, \
            (args.out / "ferplus" / "kaggle_to_ferplus.csv").open("w", newline="") as dst, \
            (args.out / "ferplus" / "fer2013new.csv").open("w", newline="") as vdst:
        vote_writer = csv.writer(vdst)
        vote_writer.writerow(votes[0])
        writer = csv.writer(dst)
        writer.writerow(["kaggle_path", "fer2013_row"])
        kept = 0
        for row in csv.DictReader(src):
            if row["kaggle_path"] not in packed or not row["fer2013_row"]:
                continue
            vote_writer.writerow(["", ""] + votes[int(row["fer2013_row"]) + 1][2:12])
            writer.writerow([str(Path(row["kaggle_path"]).with_suffix(".webp")), kept])
            kept += 1
    bundle = args.out / "bundle" / "fer2013.bundle"
    write_bundle(args.out, bundle)
    print(f"{len(files)} images -> {args.out}/fer2013, {args.out}/ferplus; all in one file: "
          f"{bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")
    return 0


# One file travels better than 31,000: copying a tree to a remote machine costs per file, and
# the tree must stay under 64 MiB. Layout: 8-byte little-endian length N, N bytes of gzip'd
# JSON ({"files": [[path, size], ...], "text": {path: text}}), then the files' bytes in order.

def write_bundle(root: Path, bundle: Path) -> None:
    images = sorted(f for f in (root / "fer2013").rglob("*.webp"))
    texts = {str(f.relative_to(root)): f.read_bytes().decode()
             for f in sorted((root / "ferplus").glob("*.csv"))}
    index = {"files": [[str(f.relative_to(root)), f.stat().st_size] for f in images],
             "text": texts}
    head = gzip.compress(json.dumps(index).encode(), mtime=0)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with bundle.open("wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for f in images:
            out.write(f.read_bytes())


def unpack_bundle(bundle: Path, root: Path) -> int:
    with bundle.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        index = json.loads(gzip.decompress(fh.read(n)))
        for rel, size in index["files"]:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fh.read(size))
    for rel, text in index["text"].items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(text.encode())
    print(f"{bundle}: {len(index['files'])} images and {len(index['text'])} FER+ files -> {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
