"""a small dense transformer shaped for a t4: fewer, wider-per-flop layers and an untied head.

what it takes from the modern speedrun recipe: rotary positions, rms norms (with gains) before
each sublayer, qk-norm, relu² in the mlp, zero-initialised output projections and head.
(a tanh soft-cap on the logits made no measurable difference at this budget and cost ~10% of
a micro-step and 3 GB, so it is not here.) everything is per token, so the model is strictly causal and
never mixes batch rows."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 100352  # padded vocabulary (rows of the embedding, columns of the head)
    real_vocab_size: int = 100277  # ids that exist; the training loss runs over these columns
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 768
    mlp_ratio: int = 4  # hidden width of the mlp / n_embd
    rope_base: float = 10000.0
    max_seq_len: int = 1024  # rotary tables are built for this many positions


def init_linear(linear: nn.Linear) -> nn.Linear:
    # uniform with the std of 0.5 / sqrt(fan_in): muon sets the update scale, this only the start
    bound = math.sqrt(3.0) * 0.5 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


class Rotary(nn.Module):
    def __init__(self, head_dim: int, max_seq_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        t = torch.arange(max_seq_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (T_max, hd/2)
        # not saved with the weights: they are a pure function of the config
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x):
        # x: (B, nh, T, hd) -> same shape, each half-pair rotated by its position's angle
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)  # (T, hd/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.c_qkv = init_linear(nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False))
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        nn.init.zeros_(self.c_proj.weight)  # each block starts as the identity on the residual
        self.rotary = Rotary(self.head_dim, cfg.max_seq_len, cfg.rope_base)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.c_qkv(x).view(B, T, 3, self.n_head, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hd)
        # qk-norm: unit rms per head keeps the attention logits bounded, which fp16 needs
        q = F.rms_norm(q, (self.head_dim,))
        k = F.rms_norm(k, (self.head_dim,))
        q, k = self.rotary(q).type_as(v), self.rotary(k).type_as(v)  # norms may run in float32 under autocast
        # no backend is forced: on a t4 (sm_75) torch picks the memory-efficient kernel
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.c_fc = init_linear(nn.Linear(cfg.n_embd, hidden, bias=False))
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=False)
        nn.init.zeros_(self.c_proj.weight)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # relu²


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm_1 = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.norm_2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm_1(x))
        x = x + self.mlp(self.norm_2(x))
        return x


class Trunk(nn.Module):
    """everything after the embedding lookup: the part data parallelism wraps in DDP. the
    embedding's gradient is sparse (a step touches a few thousand of its 100k rows), so the
    training loop exchanges the trunk's input gradients for it instead of all-reducing 77M
    mostly-zero numbers."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)  # untied
        nn.init.zeros_(self.lm_head.weight)  # uniform predictions at step 0

    def forward(self, emb, targets=None):
        """emb (B, T, C) float32 embedding rows -> logits (B, T, vocab_size); with targets (B, T) -> mean loss."""
        x = F.rms_norm(emb, (self.cfg.n_embd,))  # (B, T, C), float32 residual stream
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.norm_f(x))  # (B, T, vocab_size), fp16 under autocast
        if targets is None:
            return logits
        # float32 cross-entropy over the real vocabulary, as the harness evaluates it
        real = logits[..., : self.cfg.real_vocab_size].float()
        return F.cross_entropy(real.reshape(-1, real.size(-1)), targets.reshape(-1))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        # built in dense_muon_t4_v2's order (embedding, blocks, final norm, head): the same seed
        # gives the same initial weights
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # N(0, 1) init; normed on the way in
        self.trunk = Trunk(cfg)

    def forward(self, idx, targets=None):
        """idx (B, T) int64 -> logits (B, T, vocab_size); with targets (B, T) -> mean loss."""
        return self.trunk(self.embed(idx), targets)

    def param_counts(self) -> dict[str, int]:
        """parameters by role. `matmul` (blocks + head) is the n of 6·n·tokens; the embedding is a lookup."""
        t = self.trunk
        blocks = sum(p.numel() for p in t.blocks.parameters()) + sum(p.numel() for p in t.norm_f.parameters())
        head = t.lm_head.weight.numel()
        embedding = self.embed.weight.numel()
        return {"total": blocks + head + embedding, "blocks": blocks, "head": head, "embedding": embedding,
                "matmul": blocks + head}
