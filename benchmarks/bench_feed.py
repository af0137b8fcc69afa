"""cost of a train batch asked of the supervisor over its socket, side by side with cutting it in
the same process.

    .venv/bin/python benchmarks/bench_feed.py [--rounds 5] [--batches 400]

since harness 0.4 the record's process holds no tokens: every batch is cut by the supervisor
(supervisor/feed.py) and crosses a unix socket to the record's session (harness/session_api.py),
which asks for the next one ahead while the record trains on this one. this measures what a batch
costs at the full-scale shape (8 × 1025 int32 tokens = 32 KiB) on the cpu:
  - inprocess: DataFeed.batch, the supervisor's own cut (no socket);
  - socket:    Session.next_batch through a RunServer in this process (request, cut, frame, copy
               into the session's int64 tensors), the next batch asked for ahead as in a run.
both read the same synthetic shards; rounds alternate the two (the machine may be shared), and the
median per-batch time of each is printed with their difference. target: the added time per batch
is under 1 ms, well under 0.1% of a t4 step at this shape (a 124M-parameter step on 8k tokens
takes seconds); with the batch asked for ahead, a gpu step hides most of it."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_bench import bench_session  # noqa: E402  (the client session over an in-process server)
from supervisor.feed import DataFeed  # noqa: E402
from supervisor.shards import write_shard  # noqa: E402
from supervisor.tracks import get_track  # noqa: E402

VOCAB, SEQ, BATCH = 100277, 1024, 8
TRACK = "docs"   # its val set and held-out tail fit full-length windows (the demo track's are too short)
VAL_TOKENS = get_track(TRACK).val_tokens


def make_data(root: Path, train_tokens: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("val", VAL_TOKENS + 1), ("train", train_tokens)):
        write_shard(root / f"{split}_000000.bin", rng.integers(0, VOCAB, n), VOCAB)
    manifest = {"dataset": get_track(TRACK).dataset, "vocab_size": VOCAB, "val": [{"file": "val_000000.bin"}],
                "train": [{"file": "train_000000.bin"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def per_batch_us(next_batch, batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return (time.perf_counter() - t0) / batches * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=400)
    args = ap.parse_args()
    steps = args.batches + 1   # the socket path asks one batch ahead
    with tempfile.TemporaryDirectory(prefix="npf") as tmp:
        data = make_data(Path(tmp) / "data", train_tokens=max(steps * BATCH * SEQ * 3, 20 * 1025 * 10))
        track = get_track(TRACK).to_dict()
        times = {"inprocess": [], "socket": []}
        first = {}
        for r in range(args.rounds):
            feed = DataFeed(data, track, SEQ, BATCH, steps * BATCH * SEQ, 1234, 1, SEQ)
            counter = iter(range(steps))
            times["inprocess"].append(per_batch_us(lambda f=feed, c=counter: f.batch(0, next(c)), args.batches))
            run_dir = Path(tmp) / f"r{r}"
            with bench_session(data, TRACK, SEQ, BATCH, steps, run_dir) as (h, _):
                times["socket"].append(per_batch_us(h.next_batch, args.batches))
            if r == 0:
                ok, payload = DataFeed(data, track, SEQ, BATCH, steps * BATCH * SEQ, 1234, 1, SEQ).batch(0, 0)
                first["inprocess"] = np.frombuffer(payload, dtype=np.int32).reshape(BATCH, SEQ + 1)
                with bench_session(data, TRACK, SEQ, BATCH, steps, Path(tmp) / "check") as (h, _):
                    x, y = h.next_batch()
                first["socket"] = np.concatenate([x.numpy(), y.numpy()[:, -1:]], axis=1)
        # the same seed, the same windows: the first batch of both paths is identical
        assert np.array_equal(first["inprocess"], first["socket"]), "the socket serves different batches"
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:10s} median {med[k]:8.1f} us/batch  rounds: {', '.join(f'{x:.1f}' for x in v)}")
    print(f"socket - inprocess: +{med['socket'] - med['inprocess']:.1f} us per {BATCH}x{SEQ + 1} batch "
          f"({med['socket'] / med['inprocess']:.2f}x)")


if __name__ == "__main__":
    main()
