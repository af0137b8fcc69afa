"""how much of a profiled step's communication the gpu hid behind compute, from a chrome trace.

    python benchmarks/trace_overlap.py ddp-profile-n4.dense_muon_t4_ddp_v6.timeline.json.gz --steps 10

a kernel table (torch.profiler's key_averages) sums each kernel's time but cannot say whether an
all-reduce ran while the backward computed or after it. this reads the trace's device kernels
(`"cat": "kernel"`, all streams) and measures, on the gpu's own clock:

  comm_ms      time some nccl kernel was running (the union of their intervals)
  hidden_ms    of that, time some other kernel ran at once (overlapped with compute)
  exposed_ms   comm_ms - hidden_ms: communication with nothing else running
  compute_ms   time some non-nccl kernel was running
  idle_ms      time within the first kernel's start and the last one's end with no kernel at all

each divided by --steps (the steps the trace holds). "other kernel ran at once" means the gpu had
work besides the collective, not that the collective cost nothing: nccl kernels take sms and
memory bandwidth from the compute they overlap."""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

NCCL_PREFIX = "nccl"  # ncclDevKernel_*, ncclKernel_*: the collectives' kernels


def intervals_union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """sorted, merged [start, end) intervals."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def length(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """the intersection of two merged interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def overlap(events: list[dict], steps: int = 1) -> dict:
    """the trace's device kernels -> ms per step of comm, hidden comm, exposed comm, compute, idle."""
    kernels = [e for e in events if e.get("cat") == "kernel" and e.get("ph") == "X" and "dur" in e]
    spans = {True: [], False: []}  # is a collective -> [(start, end)] in microseconds
    for e in kernels:
        spans[str(e.get("name", "")).startswith(NCCL_PREFIX)].append((e["ts"], e["ts"] + e["dur"]))
    comm, compute = intervals_union(spans[True]), intervals_union(spans[False])
    busy = intervals_union(comm + compute)
    window = (busy[-1][1] - busy[0][0]) if busy else 0.0
    hidden = length(intersect(comm, compute))
    us_to_ms = 1e-3 / max(1, steps)  # trace times are microseconds
    return {"steps": steps, "kernels": len(kernels),
            "comm_ms": length(comm) * us_to_ms, "hidden_ms": hidden * us_to_ms,
            "exposed_ms": (length(comm) - hidden) * us_to_ms, "compute_ms": length(compute) * us_to_ms,
            "idle_ms": (window - length(busy)) * us_to_ms}


def trace_events(data) -> list[dict]:
    """a parsed chrome trace's events (an object with traceEvents, or the bare list)."""
    return data["traceEvents"] if isinstance(data, dict) else data


def read_trace(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return trace_events(json.load(f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", type=Path, help="a chrome trace (.json or .json.gz) from torch.profiler")
    ap.add_argument("--steps", type=int, default=1, help="training steps the trace holds (figures are per step)")
    args = ap.parse_args()
    if not args.trace.is_file():
        raise SystemExit(f"error: no trace at {args.trace}; give the .json(.gz) file ddp_profile --timeline wrote")
    print(json.dumps(overlap(read_trace(args.trace), args.steps), indent=2))


if __name__ == "__main__":
    main()
