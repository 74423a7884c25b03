"""Quality table: gan / wgan / wgan-gp / sngan on ring8 and grid25 with the papers' defaults.

For each run: modes covered, high-quality samples (within 3 sigma of a centre),
reverse KL of the mode histogram, exact W_1 to the data (2,500 samples each,
exact assignment), and the training wall time. Writes a Markdown table.

    PYTHONPATH=. python bench/quality_table.py --steps 2000 --out runs/quality
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fastgan.train import Trainer, preset

ALGOS = ("gan", "wgan", "wgan-gp", "sngan")
DATA = ("grid25", "ring8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", type=int, default=None, help="default: the presets' (128)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the presets' (256; wgan 64)")
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--data", default=",".join(DATA))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/quality")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for data in args.data.split(","):
        for algo in args.algos.split(","):
            knobs = {k: v for k, v in (("width", args.width), ("batch_size", args.batch_size)) if v is not None}
            cfg = preset(algo, data=data, steps=args.steps, progress=False, log_every=100, checkpoint_every=args.steps, **knobs)
            start = time.perf_counter()
            trainer = Trainer(cfg, out=out / f"{algo}-{data}")
            m = trainer.fit()
            m["total_wall_s"] = time.perf_counter() - start
            rows.append(m)
            print(json.dumps(m), flush=True)
    lines = [
        f"steps {args.steps}, MLP width {args.width or 'preset'}, batch {args.batch_size or 'preset'}, {args.threads} thread(s)",
        "",
        "| algo | data | modes | high quality | reverse KL | W_1 to data | train wall time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in rows:
        lines.append(
            f"| {m['algo']} | {m['data']} | {m['modes_covered']} / {m['modes_total']} | {m['high_quality_pct']:.1f}% "
            f"| {m['reverse_kl']:.3f} | {m['w1_to_data']:.3f} | {m['wall_time_s']:.0f} s |"
        )
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
