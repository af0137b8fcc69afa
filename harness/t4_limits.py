"""the limits of one Tesla T4, enforced on any device (`nanopoor run RECORD --as-t4`).

a T4 (compute capability 7.5) has 15 GiB for a process, fp16 tensor cores and no TF32, bf16 or
fp8, and none of the flash or cuDNN attention kernels torch picks on newer GPUs. under --as-t4
the client sets the same limits before the record runs and checks at every batch, progress
evaluation and at finish that they still hold: a record that breaks one ends `invalid` with a
violation of kind `t4_limits` that names the limit. these checks run in the record's own process,
so they catch mistakes, not a record set on hiding: the supervisor's scorer checks the dtypes of
the exported forward outside it, and only a run on a real T4 proves the fit (docs/trust.md).

what is set:
- memory: torch.cuda.set_per_process_memory_fraction(15 GiB / the gpu's total); the caching
  allocator then raises out-of-memory past the cap (the runner names the cap in the reason);
- TF32 off for matmuls and cuDNN, float32 matmul precision "highest";
- scaled dot-product attention: flash and cuDNN backends off (memory-efficient and math stay);
- bf16 and fp8: torch.autocast refuses them on entry; the autocast state when a batch is taken
  and the parameters of the forward's modules at finish are checked too.
"""
from __future__ import annotations

from harness.contract_violation import ContractViolation
from harness.session_api import Session

T4_MEMORY_BYTES = 15 * 2**30
T4_CAPABILITY = "7.5"
REFUSED_DTYPES = ("bfloat16", "float8")   # substrings of torch dtype names (float8_e4m3fn, ...)
KIND = "t4_limits"


def refused(dtype) -> bool:
    name = str(dtype).replace("torch.", "")
    return any(r in name for r in REFUSED_DTYPES)


def _resolved(node, parents) -> str:
    """a torch fp32_precision flag, following "none" up to the parent that sets it."""
    for n in (node, *parents):
        value = n.fp32_precision
        if value != "none":
            return value
    return "none"


def tf32_switches() -> list[str]:
    """which TF32 switches are on (empty under the T4 limits). reads the per-operator flags:
    torch raises when the legacy cudnn.allow_tf32 getter meets flags set by the newer api."""
    import torch

    b = torch.backends
    on = []
    if _resolved(b.cuda.matmul, [b]) == "tf32" or torch.get_float32_matmul_precision() != "highest":
        on.append("matmul")
    for name in ("conv", "rnn"):
        if _resolved(getattr(b.cudnn, name), [b.cudnn, b]) == "tf32":
            on.append(f"cudnn {name}")
    return on


def fast_attention_on() -> list[str]:
    import torch

    on = []
    if torch.backends.cuda.flash_sdp_enabled():
        on.append("flash")
    if torch.backends.cuda.cudnn_sdp_enabled():
        on.append("cudnn")
    return on


def set_limits(device: str) -> dict:
    """switch the process to the T4's limits; returns what was set (the `t4_limits` event)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    _refuse_bf16_autocast()
    applied = {"memory_cap_bytes": T4_MEMORY_BYTES, "tf32": False, "sdp_backends": ["efficient", "math"],
               "refused_dtypes": list(REFUSED_DTYPES), "capability": T4_CAPABILITY, "memory_fraction": None}
    if device.startswith("cuda"):
        idx = torch.device(device).index or 0
        total = torch.cuda.get_device_properties(idx).total_memory
        if total > T4_MEMORY_BYTES:   # a real T4 (or smaller card) has no more than the cap anyway
            applied["memory_fraction"] = T4_MEMORY_BYTES / total
            torch.cuda.set_per_process_memory_fraction(applied["memory_fraction"], idx)
    return applied


def _refuse_bf16_autocast() -> None:
    """torch.autocast (and torch.amp / torch.cuda.amp, its subclasses) refuses bf16 and fp8 on entry."""
    import torch

    cls = torch.amp.autocast_mode.autocast
    if getattr(cls.__enter__, "_t4_guard", False):
        return
    enter = cls.__enter__

    def guarded_enter(self):
        if getattr(self, "_enabled", True) and refused(getattr(self, "fast_dtype", None)):
            raise ContractViolation(KIND, f"bf16/fp8: the record entered torch.autocast with {self.fast_dtype} "
                                          f"on {self.device}; a T4 (capability {T4_CAPABILITY}) computes in fp16 or fp32")
        return enter(self)

    guarded_enter._t4_guard = True
    cls.__enter__ = guarded_enter


class T4Session(Session):
    """the session with the T4's limits checked at each batch, progress evaluation and at finish."""

    def next_batch(self):
        import torch

        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        if torch.is_autocast_enabled(kind) and refused(torch.get_autocast_dtype(kind)):
            raise ContractViolation(KIND, f"bf16/fp8: autocast to {torch.get_autocast_dtype(kind)} was on when a batch "
                                          "was taken; a T4 computes in fp16 or fp32")
        return super().next_batch()

    def evaluate(self, forward, step=None, val_tokens=None) -> float:
        loss = super().evaluate(forward, step, val_tokens)
        self.check_t4_limits()
        return loss

    def finish(self, forward) -> dict:
        from harness.handover import forward_modules

        self.check_t4_limits(forward_modules(forward, self.config.get("record_dir"))[0])
        return super().finish(forward)

    def check_t4_limits(self, modules=()) -> None:
        """every limit that can be read from the process now; the first broken one ends the run."""
        import torch

        if tf32 := tf32_switches():
            raise ContractViolation(KIND, f"tf32: the record turned TF32 back on ({', '.join(tf32)}); a T4 has no TF32")
        if fast := fast_attention_on():
            raise ContractViolation(KIND, f"attention: the record re-enabled the {' and '.join(fast)} attention "
                                          f"backend(s), which a T4 (capability {T4_CAPABILITY}) does not have")
        for m in modules:
            for name, t in [*m.named_parameters(), *m.named_buffers()]:
                if refused(t.dtype):
                    raise ContractViolation(KIND, f"bf16/fp8: {type(m).__name__}.{name} is {t.dtype}; "
                                                  "a T4 computes in fp16 or fp32")
        if self.device.startswith("cuda"):
            reserved = torch.cuda.max_memory_reserved(self.device)
            if reserved > T4_MEMORY_BYTES:
                raise ContractViolation(KIND, f"memory: the record reserved {reserved / 2**30:.2f} GiB, over the "
                                              f"{T4_MEMORY_BYTES / 2**30:.0f} GiB a T4 has (the cap was lifted)")


def apply(sess: Session) -> None:
    """called by harness.boot before the record runs, when the config asks for a T4's limits."""
    applied = set_limits(sess.device)
    sess.__class__ = T4Session   # the same object the record gets from harness.session(), now checked
    sess.tell("t4_limits", **applied)
