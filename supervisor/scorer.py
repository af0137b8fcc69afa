"""`python -m supervisor.scorer`: the claim, computed where no record code runs.

the supervisor starts this process (in a sandbox of its own when the run is isolated) once the
record has handed over its weights and its forward. it reads one json line on stdin (what to
score) followed by the val tokens and the held-out check's tokens (int32), and writes one json
line on stdout: the val loss, the held-out loss, the causality probe's verdict, whether the
model answered the same batches the same way twice, and the dtypes the graph computes in.

the model is either the exported graph bound to the handed-over weights (supervisor.graph: no
record code runs here at all) or, for a forward that could not be exported, a fresh isolated
process of the record's own (supervisor.remote) that is sent inputs and returns logits. either
way the targets never leave this process. batches go in an order drawn from the operating
system's randomness, the probe alters random batches, and a few batches are asked for again at
the end: a forward that adapts to what it was shown, or remembers earlier calls, answers them
differently."""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path

from supervisor.causality import NOISE_CEILING, Probe
from supervisor.evaluate import TensorWindows, claim_loss

HELDOUT_MARGIN = 0.25   # nats: val this far below never-served train tokens means the model saw val
REPEATS = 2             # val batches asked for again at the end
REPEAT_POSITIONS = 8    # positions of each repeated batch whose logits are compared


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _shuffled(source: TensorWindows, rng: random.Random) -> TensorWindows:
    rng.shuffle(source.plan)
    return source


def graph_dtypes(ep) -> list[str]:
    """floating dtypes the graph's nodes produce (from the traced metadata) and its tensors hold."""
    import torch

    seen = set()
    for gm in [ep.graph_module, *(m for m in ep.graph_module.modules() if hasattr(m, "graph"))]:
        for n in gm.graph.nodes:
            vals = n.meta.get("val")
            for v in vals if isinstance(vals, (list, tuple)) else [vals]:
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    seen.add(str(v.dtype).removeprefix("torch."))
    return sorted(seen)


def apply_t4_limits(device: str) -> None:
    """the claim is computed as a T4 would: no TF32, no flash or cuDNN attention."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if device.startswith("cuda"):
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_cudnn_sdp(False)


class Timed:
    """the model, every call timed (the device synchronised) and its tokens counted: what the claim's
    forwards cost is measured here, and judged against the train clock by the supervisor."""

    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self.ms, self.tokens, self.calls = 0.0, 0, 0
        self.call_ms = getattr(model, "call_ms", [])

    def __call__(self, x):
        import torch

        t0 = time.perf_counter()
        out = self.model(x)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        self.ms += (time.perf_counter() - t0) * 1000
        self.tokens += x.numel()
        self.calls += 1
        return out


def score(model, val, check, req: dict, device: str, probes: dict | None = None) -> dict:
    """the claim's numbers for a model callable (B, T) int64 -> logits (B, T, >= vocab). probes:
    other callables of the same model, by probe kind ("suffix", "cross"), that answer the probe's
    altered copies (a pickled forward's other claim servers); by default the model answers them."""
    import torch

    model = Timed(model, device)
    probes = {kind: Timed(m, device) for kind, m in (probes or {}).items()}
    V, T, B = int(req["vocab_size"]), int(req["eval_seq_len"]), int(req["eval_batch_size"])
    rng = random.SystemRandom()
    probe = Probe(V)
    val_src = _shuffled(TensorWindows(val, T, B), rng)
    picks = rng.sample(range(len(val_src.plan)), min(REPEATS, len(val_src.plan)))
    keep = {i: (torch.tensor(sorted(rng.sample(range(T), min(REPEAT_POSITIONS, T)))), None) for i in picks}
    t0 = time.perf_counter()
    loss, n, val_ms = claim_loss(model, val_src, V, probe=probe, keep=keep, device=device, probe_models=probes)
    log(f"val: {loss:.4f} over {n:,} tokens ({val_ms / 1000:.2f} s of forwards)")
    check_src = _shuffled(TensorWindows(check, T, B), rng)
    hloss, hn, check_ms = claim_loss(model, check_src, V, probe=probe, device=device, probe_models=probes)
    log(f"held-out check: {hloss:.4f} over {hn:,} tokens")
    repeat_diff = 0.0
    with torch.no_grad():
        for i, (pos, first) in keep.items():
            again = model(val_src.inputs(i))[:, pos, :V].float().cpu()
            d = (again - first).abs().max().item() if first is not None else float("inf")
            repeat_diff = max(repeat_diff, d if math.isfinite(d) else float("inf"))
    causal = probe.result()
    causal["repeat_diff"] = repeat_diff
    from supervisor.remote import unexplained_call

    causal["unexplained_call"] = unexplained_call(model.call_ms)   # recorded; the cost below is what is judged
    answered = [model, *probes.values()]
    cost = {key: sum(getattr(m, key) for m in answered) for key in ("ms", "tokens", "calls")}
    cost["forward_ms"] = cost.pop("ms")
    causal["stateless"] = repeat_diff <= NOISE_CEILING
    if not causal["stateless"]:
        causal["passed"] = False
    gap = hloss - loss
    return {"val_loss": loss, "val_tokens": n, "forward_ms": val_ms + check_ms, "eval_ms": (time.perf_counter() - t0) * 1000,
            "cost": cost,
            "causality": causal,
            "heldout": {"heldout_loss": hloss, "val_loss": loss, "gap": gap, "tokens": hn, "margin": HELDOUT_MARGIN,
                        "passed": bool(math.isfinite(gap) and gap <= HELDOUT_MARGIN)}}


def _read_tokens(stream, n: int):
    import numpy as np
    import torch

    raw = stream.read(4 * n)
    if len(raw) != 4 * n:
        raise ValueError(f"expected {n} tokens on stdin, got {len(raw) // 4}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.int32).astype(np.int64))


def main() -> int:
    import torch

    import torch._export.serde.serialize  # torch.export's loader, imported while the record trains

    from supervisor import graph

    line = sys.stdin.buffer.readline()
    if not line:   # the run ended before its weights were handed over: nothing to score
        return 0
    req = json.loads(line)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    val = _read_tokens(sys.stdin.buffer, int(req["val_tokens"])).to(device)
    check = _read_tokens(sys.stdin.buffer, int(req["check_tokens"])).to(device)
    folder = Path(req["handover_dir"])
    out: dict = {"claim_path": req["kind"], "device": device}
    probes: dict = {}
    try:
        if req.get("as_t4"):
            apply_t4_limits(device)
        if req["kind"] == "graph":
            ep = graph.load_program(folder / "forward.pt2")
            out["graph"] = graph.check_ops(ep)
            out["dtypes"] = graph_dtypes(ep)
            model, bound = graph.bind(ep, graph.read_weights(folder, device))
            out["graph"]["tensors_bound"] = bound
            log(f"graph: {out['graph']['nodes']} nodes, {len(out['graph']['aten_ops'])} aten operators, {bound} tensors bound "
                "from the handover")
        else:
            from supervisor.remote import RemoteModel

            servers = {role: RemoteModel(entry, req["vocab_size"], device) for role, entry in req["claim_servers"].items()}
            # the probe's copies go to a server that never saw the batches they were made from; a
            # batch's cut copies reach it before its row-swapped ones (Probe.calls's order)
            model, probes = servers["eval"], dict.fromkeys(Probe.ALTERED, servers["probe"])
        out.update(score(model, val, check, req, device, probes))
        out["ok"] = True
    except graph.GraphRefused as e:
        out.update(ok=False, refused=True, error=str(e))
    except Exception as e:
        out.update(ok=False, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}")
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)   # the verdict is written: tearing torch's modules down would cost the run most of a second
