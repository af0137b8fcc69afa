"""facts about the device and the model that go into run_end: timings that sync the device, the
compile counter, the floating dtypes the model computes in, the gpu's properties."""
from __future__ import annotations

from harness.clock import device_sync, now_ns


def device_ms_since(t0_ns: int, device: str) -> float:
    device_sync(device)()
    return (now_ns() - t0_ns) / 1e6


def compile_count() -> int:
    """graphs torch.compile has produced so far in this process (torch's own counter)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"].get("unique_graphs", 0)) if utils is not None else 0


def scan_dtypes(forward, x, modules) -> set[str]:
    """floating dtypes the model computes in: one eager forward under a dispatch mode, plus its
    parameters and buffers. bf16 or fp8 anywhere means the record would not run as-is on a T4."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    seen: set[str] = set()
    for m in modules:
        for t in m.state_dict().values():
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                seen.add(str(t.dtype).replace("torch.", ""))

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    seen.add(str(t.dtype).replace("torch.", ""))
            return out

    try:
        with torch.no_grad(), torch.compiler.set_stance("force_eager"), Record():
            forward(x)
    except Exception as e:  # a forward that refuses the mode still has its parameters scanned
        seen.add(f"unknown ({type(e).__name__})")
    return seen


def torch_facts(device: str) -> dict:
    import torch

    facts = {"version": torch.__version__, "cuda": torch.version.cuda, "device": device}
    if device.startswith("cuda"):
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        facts.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                     memory_bytes=props.total_memory, device_count=torch.cuda.device_count())
    return facts
