"""what one T4 would need for a record: arithmetic, not a measurement (the README's track table).

flops per token = 6·n (n = the record's matmul parameters, forward + backward) + 12·L·d·T for
attention's scores and weighted sums (L layers, width d, context T; not halved for the causal
mask). a T4's fp16 tensor peak is 65 TFLOP/s (NVIDIA's datasheet); the MFU a T4 reaches on GPT
training is assumed, not measured: the 43–45% the records reach on an H100 does not carry over
(a 70 W card that lowers its clocks under sustained tensor load, and less memory bandwidth per flop)."""
from __future__ import annotations

from dataclasses import dataclass

from nanopoor.gpu_peaks import fp16_peak_flops

T4_FP16_PEAK_FLOPS = fp16_peak_flops("Tesla T4")   # 65 TFLOP/s: the datasheet table in gpu_peaks.py
T4_MFU_ASSUMED = 0.30              # central assumption
T4_MFU_RANGE = (0.25, 0.40)        # what fp16 GPT training on a T4 typically reaches


@dataclass(frozen=True)
class Estimate:
    flops_per_token: float
    tokens: int
    tokens_per_s: float            # at T4_MFU_ASSUMED
    hours: float                   # at T4_MFU_ASSUMED
    hours_range: tuple[float, float]   # at the high and the low end of T4_MFU_RANGE


def flops_per_token(matmul_params: int, n_layer: int, d_model: int, seq_len: int) -> float:
    return 6.0 * matmul_params + 12.0 * n_layer * d_model * seq_len


def estimate(matmul_params: int, n_layer: int, d_model: int, seq_len: int, tokens: int) -> Estimate:
    fpt = flops_per_token(matmul_params, n_layer, d_model, seq_len)

    def hours(mfu: float) -> float:
        return tokens * fpt / (T4_FP16_PEAK_FLOPS * mfu) / 3600

    lo, hi = T4_MFU_RANGE
    return Estimate(fpt, tokens, T4_FP16_PEAK_FLOPS * T4_MFU_ASSUMED / fpt, hours(T4_MFU_ASSUMED), (hours(hi), hours(lo)))


# dense_muon_t4_v4, the board's rank 1 (dense_muon_t4_v2's model at 60 steps): its run logs print
# matmul_params=119498496 (6 layers x 768 wide, seq_len 1024)
FASTEST = {"record": "dense_muon_t4_v4", "matmul_params": 119_498_496, "n_layer": 6, "d_model": 768, "seq_len": 1024}
