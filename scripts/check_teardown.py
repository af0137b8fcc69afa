"""does the harness's bounded teardown end a rank whose record left captured collectives alive?

    torchrun --standalone --nproc_per_node 2 scripts/check_teardown.py --timeout-s 20

each rank (nccl, one gpu each) captures an all-reduce in a cuda graph, replays it and keeps the
graph, as a record might. it then calls harness.launch.end_process_group, the call the harness
makes after run_end, and prints whether the teardown finished and how long the rank waited.
without the bound, a rank that holds such a graph can wait in destroy_process_group until the
runner kills it. needs 2 or more gpus."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

from harness.launch import end_process_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout-s", type=float, default=20.0, help="the teardown's bound, as the harness's TEARDOWN_TIMEOUT_S")
    ap.add_argument("--release", action="store_true", help="reset the graph first (the records' own fix)")
    args = ap.parse_args()
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    x = torch.ones(1 << 20, device=device)
    dist.all_reduce(x)  # the communicator, made outside the capture
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            dist.all_reduce(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        dist.all_reduce(x)
    graph.replay()
    torch.cuda.synchronize()
    if args.release:
        graph.reset()
    t0 = time.perf_counter()
    finished = end_process_group(args.timeout_s)
    waited_s = time.perf_counter() - t0
    print(json.dumps({"rank": rank, "graph_released": args.release, "teardown_finished": finished,
                      "waited_s": round(waited_s, 2), "timeout_s": args.timeout_s}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # as the harness ends a rank after run_end


if __name__ == "__main__":
    main()
