"""Do ONNX Runtime's fused int8 kernels compute what an int8 file specifies on this CPU?

    python bench/int8_kernels.py                          # the shipped model
    git show 394f826:src/multinet_emotion/assets/model.onnx > /tmp/previous.onnx
    python bench/int8_kernels.py --model /tmp/previous.onnx   # the full-range file before it

Runs the file on PrivateTest faces twice: with the runtime's default (fused u8 x s8 kernels)
and with the graph's exact arithmetic (`session.disable_quant_qdq`), and prints the top-1
agreement and the largest probability difference. On CPUs without VNNI the fused kernels
sum u8 x s8 pairs in saturating 16-bit registers, which full-range int8 weights overflow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from multinet_emotion import MultiNetError
from multinet_emotion.runtime.classifier import INPUT_NAME, OUTPUT_NAME, cpu_has_vnni, default_model_path
from multinet_emotion.training.datasets import DataConfig, load_dataset
from multinet_emotion.training.evaluate import model_facts

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=default_model_path())
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--limit", type=int, default=512, help="a seeded random sample of N faces")
    args = p.parse_args(argv)
    import onnxruntime as ort

    try:
        if not args.model.is_file():
            raise MultiNetError(f"{args.model}: model file not found")
        size, _ = model_facts(args.model)  # the faces read at the size the file takes
        split = load_dataset(DataConfig(path=args.data, image_size=size)).split("test")
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pick = np.sort(np.random.default_rng(0).choice(len(split), min(args.limit, len(split)),
                                                   replace=False))
    x = split.images[pick].astype(np.float32)[:, None]
    probs = {}
    for exact in ("0", "1"):
        options = ort.SessionOptions()
        options.add_session_config_entry("session.disable_quant_qdq", exact)
        options.log_severity_level = 3
        session = ort.InferenceSession(str(args.model), options,
                                       providers=["CPUExecutionProvider"])
        probs[exact] = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + 64]})[0]
                                       for i in range(0, len(x), 64)])
    agree = float((probs["0"].argmax(1) == probs["1"].argmax(1)).mean())
    print(f"model: {args.model}\nCPU has VNNI: {cpu_has_vnni()}\nfaces: {len(x)} (PrivateTest, seed 0)")
    print(f"fused kernels vs exact arithmetic: top-1 agreement {agree:.4f}, "
          f"max |dp| {np.abs(probs['0'] - probs['1']).max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
