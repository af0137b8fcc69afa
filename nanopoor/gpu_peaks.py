"""each GPU's fp16 dense tensor-core peak (FLOP/s), from the vendor's datasheet, and the hardware
FLOP cost of a run: peak × train time × GPUs, the measure the Marin speedrun ranks by, so rows made
on different GPUs compare. dense means without 2:4 sparsity (datasheets print the sparse figure,
twice this, beside it). a GPU not listed has no cost ("?"), never a guessed one."""
from __future__ import annotations

import re

# (pattern on the GPU name, fp16 dense tensor TFLOP/s, where the figure comes from); the first match wins,
# so a variant (PCIe) comes before its family
FP16_DENSE_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"\bT4\b", 65.0, "NVIDIA T4 datasheet: 65 TFLOPS mixed precision (FP16/FP32)"),
    (r"\bV100\b.*\bPCIe\b", 112.0, "NVIDIA V100 datasheet, PCIe: 112 TFLOPS deep learning (tensor)"),
    (r"\bV100\b", 125.0, "NVIDIA V100 datasheet, SXM2: 125 TFLOPS deep learning (tensor)"),
    (r"\bA100\b", 312.0, "NVIDIA A100 datasheet: 312 TFLOPS FP16 tensor core (624 with sparsity)"),
    (r"\bA10\b", 125.0, "NVIDIA A10 datasheet: 125 TFLOPS FP16 tensor core (250 with sparsity)"),
    (r"\bL4\b", 121.0, "NVIDIA L4 datasheet: 242 TFLOPS FP16 tensor core with sparsity, 121 dense"),
    (r"\bH100\b.*\bPCIe\b", 756.0, "NVIDIA H100 datasheet, PCIe: 1,513 TFLOPS FP16 tensor core with sparsity, 756 dense"),
    (r"\bH100\b", 989.0, "NVIDIA H100 datasheet, SXM: 1,979 TFLOPS FP16 tensor core with sparsity, 989 dense"),
    (r"\bH200\b", 989.0, "NVIDIA H200 datasheet: 1,979 TFLOPS FP16 tensor core with sparsity, 989 dense"),
)
_LABEL_RE = re.compile(r"^\s*(\d+)\s*[×x]\s*(.+?)\s*$")


def fp16_peak_flops(gpu_name: str) -> float | None:
    """FLOP/s of one GPU of this name (nvidia-smi's), or None when it is not in the table."""
    for pattern, tflops, _ in FP16_DENSE_TFLOPS:
        if re.search(pattern, gpu_name or ""):
            return tflops * 1e12
    return None


def hardware_peak_flops(label: str) -> tuple[int, float] | None:
    """(GPU count, FLOP/s per GPU) of a hardware label like `2× NVIDIA H200`; None for a cpu, a
    mix of models (`1× A + B`) or a GPU the table does not hold."""
    m = _LABEL_RE.match(label or "")
    if not m or " + " in m.group(2):
        return None
    peak = fp16_peak_flops(m.group(2))
    return (int(m.group(1)), peak) if peak else None


def hardware_flop_cost(label: str, train_time_ms: float | None) -> float | None:
    """peak FLOP/s × train time (s) × GPUs of a run on this hardware, or None when either is unknown."""
    peak = hardware_peak_flops(label)
    if peak is None or train_time_ms is None or train_time_ms != train_time_ms:
        return None
    gpus, flops = peak
    return flops * gpus * train_time_ms / 1000.0
