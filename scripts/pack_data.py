"""Pack FER2013 and the FER+ votes small enough to travel to a lent GPU machine.

    python scripts/pack_data.py                      # -> pack/ (git-ignored; ~26 MB)

Every image of ../shared/data/fer2013 (Kaggle folder layout) is re-encoded as WebP quality
85 under pack/fer2013/ with the same relative path (suffix .webp); the FER+ mapping is
copied with its paths rewritten to match, so `--data pack/fer2013 --ferplus pack/ferplus`
reads the same images and labels as the originals. The images never enter git.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "fer2013")
    p.add_argument("--ferplus", type=Path, default=SHARED / "ferplus")
    p.add_argument("--out", type=Path, default=ROOT / "pack")
    p.add_argument("--quality", type=int, default=85)
    args = p.parse_args(argv)
    if not (args.data / "train").is_dir() or not (args.ferplus / "kaggle_to_ferplus.csv").is_file():
        print(f"error: {args.data} (train/, test/) and {args.ferplus} (FER+ votes) are needed",
              file=sys.stderr)
        return 2
    files = sorted(f for f in args.data.rglob("*") if f.suffix.lower() in (".jpg", ".png"))
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
    shutil.copy(args.ferplus / "fer2013new.csv", args.out / "ferplus" / "fer2013new.csv")
    with (args.ferplus / "kaggle_to_ferplus.csv").open(newline="") as src, \
            (args.out / "ferplus" / "kaggle_to_ferplus.csv").open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            row["kaggle_path"] = str(Path(row["kaggle_path"]).with_suffix(".webp"))
            writer.writerow(row)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{len(files)} images -> {args.out} ({size / 1e6:.1f} MB with the FER+ files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
