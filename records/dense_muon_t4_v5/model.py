"""dense_muon_t4_v4's transformer with the paths that make a short run learn faster per token.

the base is v4's: rotary positions, rms norms with gains before each sublayer, qk-norm, relu²,
zero-initialised output projections and head, an untied head. each addition below has a switch
in GPTConfig (so a sweep can take it away on its own) and is cheap per token:
- value embeddings: extra token tables mixed into attention's values in the first and the last
  blocks; a token's identity reaches every head without passing through the residual stream.
- x0: every block reads a learned mix of the residual stream and the normed input embedding.
- u-net skips: the output of block i (first half) is added, with a learned weight, before block
  L-1-i (second half).
- attention gate: a sigmoid per head, read from a few dimensions of the block's input, scales
  that head's output (a head can do nothing for a token without a sink token).
- a learned bias on the logits (the unigram distribution has its own parameters) and a tanh
  soft-cap that bounds them.
- rotary on half of each head's dimensions only, with slower frequencies; the other half is
  position-free.
- optional: a low-rank head (fewer flops in the 100k-column matmul) and sliding windows on some
  layers (an explicit mask the memory-efficient attention kernel takes; no flash attention on a t4).
everything is per token or causal within a row, so the model never mixes batch rows, and the
forward has no data-dependent python branch (torch.export can trace it with a dynamic batch)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 100352  # padded vocabulary (rows of the embeddings, columns of the head)
    real_vocab_size: int = 100277  # ids that exist; the training loss runs over these columns
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 768
    mlp_ratio: int = 4  # hidden width of the mlp / n_embd
    max_seq_len: int = 1024  # rotary tables are built for this many positions
    rope: str = "half"  # "half": half of each head's dims rotated, the rest position-free; "full": v4's rotary (base 10000)
    attn_scale: float = 0.12  # attention logit scale; 0: 1/sqrt(head_dim)
    value_embeds: int = 3  # value-embedding tables; table i feeds block i and block n_layer-k+i
    x0_mix: bool = True  # each block starts from a·x + b·x0 (a = 1, b = 0 at init)
    unet: bool = True  # skip from block i to block n_layer-1-i with a learned weight (1 at init)
    attn_gate_dims: int = 12  # residual dims read by the per-head output gate; 0: no gate
    logit_bias: bool = True  # a learned bias over the vocabulary, added to the logits
    logit_softcap: float = 15.0  # logits = cap · tanh(z / cap); 0: no cap
    head_rank: int = 0  # > 0: the head is (n_embd -> head_rank -> vocab); 0: one full-rank matrix
    window_layers: str = ""  # layers (e.g. "1,2,4") whose attention is limited to the last `window` tokens; "": none


def init_linear(linear: nn.Linear) -> nn.Linear:
    # uniform with the std of 0.5 / sqrt(fan_in): muon sets the update scale, this only the start
    bound = math.sqrt(3.0) * 0.5 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


def value_embed_layers(n_layer: int, k: int) -> list[int | None]:
    """which table each block reads: the first k blocks and the last k blocks take tables 0..k-1
    (a u-net shape: the first and the last block share table 0), the middle ones none."""
    k = min(k, n_layer // 2)
    plan: list[int | None] = [None] * n_layer
    for i in range(k):
        plan[i] = i
        plan[n_layer - k + i] = i
    return plan


class Rotary(nn.Module):
    def __init__(self, head_dim: int, max_seq_len: int, kind: str):
        super().__init__()
        if kind == "full":
            inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        elif kind == "half":
            # a quarter of the dims' pairs turn, from one turn per 2π tokens down to one per 1024·2π;
            # the other pairs have frequency 0 (no position at all)
            quarter = head_dim // 4
            inv_freq = torch.cat([(1.0 / 1024) ** torch.linspace(0, 1, quarter), torch.zeros(head_dim // 2 - quarter)])
        else:
            raise ValueError(f"rope must be 'half' or 'full', not {kind!r}")
        freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T_max, hd/2)
        # not saved with the weights: a pure function of the config
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x):
        # x: (B, nh, T, hd) -> same shape, each (i, i + hd/2) pair rotated by its position's angle
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)  # (T, hd/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, has_value_embed: bool, windowed: bool):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.scale = cfg.attn_scale or None  # None: sdpa's 1/sqrt(head_dim)
        self.c_qkv = init_linear(nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False))
        self.c_qkv.weight.ns_split = 3  # muon orthogonalises q, k and v each on its own
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        nn.init.zeros_(self.c_proj.weight)  # each block starts as the identity on the residual
        self.rotary = Rotary(self.head_dim, cfg.max_seq_len, cfg.rope)
        # values = a·v + b·value_embedding; (0.5, 0.5) at init
        self.ve_mix = nn.Parameter(torch.tensor([0.5, 0.5])) if has_value_embed else None
        self.gate_dims = cfg.attn_gate_dims
        if self.gate_dims:
            # zero: every gate starts at sigmoid(0) = 0.5
            self.gate = nn.Parameter(torch.zeros(cfg.n_head, self.gate_dims))
        self.windowed = windowed

    def forward(self, x, ve=None, window=None):
        """x (B, T, C) normed; ve (B, T, C) or None; window: 0-d int tensor (tokens) for a windowed layer."""
        B, T, C = x.shape
        qkv = self.c_qkv(x).view(B, T, 3, self.n_head, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hd)
        if self.ve_mix is not None:
            mix = self.ve_mix.to(v.dtype)
            v = mix[0] * v + mix[1] * ve.to(v.dtype).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        # qk-norm: unit rms per head keeps the attention logits bounded, which fp16 needs
        q = F.rms_norm(q, (self.head_dim,))
        k = F.rms_norm(k, (self.head_dim,))
        q, k = self.rotary(q).type_as(v), self.rotary(k).type_as(v)  # norms may run in float32 under autocast
        if self.windowed:
            pos = torch.arange(T, device=x.device)
            back = pos[:, None] - pos[None, :]  # (T, T): how far back each key is
            mask = (back >= 0) & (back < window)  # causal and inside the window
            # an explicit mask: the memory-efficient kernel takes it (flash attention does not exist on a t4)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)  # (B, nh, T, hd)
        y = y.transpose(1, 2)  # (B, T, nh, hd)
        if self.gate_dims:
            gate = torch.sigmoid(x[..., : self.gate_dims] @ self.gate.to(x.dtype).t())  # (B, T, nh)
            y = y * gate.unsqueeze(-1).to(y.dtype)
        return self.c_proj(y.reshape(B, T, C))


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
    def __init__(self, cfg: GPTConfig, has_value_embed: bool, windowed: bool):
        super().__init__()
        # x = a·x + b·x0 at the block's start; (1, 0) at init: the plain residual stream
        self.x0_mix = nn.Parameter(torch.tensor([1.0, 0.0])) if cfg.x0_mix else None
        self.norm_1 = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, has_value_embed, windowed)
        self.norm_2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x, x0, ve=None, window=None):
        if self.x0_mix is not None:
            x = self.x0_mix[0] * x + self.x0_mix[1] * x0
        x = x + self.attn(self.norm_1(x), ve, window)
        x = x + self.mlp(self.norm_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        L = cfg.n_layer
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # N(0, 1) init; normed on the way in
        self.ve_plan = value_embed_layers(L, cfg.value_embeds)
        n_tables = min(cfg.value_embeds, L // 2)
        self.value_embeds = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.n_embd) for _ in range(n_tables))
        windowed = {int(i) for i in cfg.window_layers.split(",") if i.strip()}
        if any(i >= L for i in windowed):
            raise ValueError(f"window_layers {cfg.window_layers!r} names a layer past the last of {L}")
        self.blocks = nn.ModuleList(Block(cfg, self.ve_plan[i] is not None, i in windowed) for i in range(L))
        # block i < L/2 hands its output to block L-1-i; weight 1 at init
        self.skip_weights = nn.Parameter(torch.ones(L // 2)) if cfg.unet else None
        # the sliding window of the windowed layers, in tokens. the schedule sets it before every step
        # (the first before the first batch), so it is no state to save or restore: not persistent
        self.register_buffer("window", torch.tensor(cfg.max_seq_len, dtype=torch.int64), persistent=False)
        self.norm_f = nn.RMSNorm(cfg.n_embd)
        if cfg.head_rank:
            self.head_down = init_linear(nn.Linear(cfg.n_embd, cfg.head_rank, bias=False))
        self.lm_head = nn.Linear(cfg.head_rank or cfg.n_embd, cfg.vocab_size, bias=False)  # untied
        nn.init.zeros_(self.lm_head.weight)  # uniform predictions at step 0
        self.logit_bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if cfg.logit_bias else None

    def head(self, idx):
        """idx (B, T) int64 -> the head's raw output (B, T, vocab_size), before the bias and the cap."""
        C = self.cfg.n_embd
        # float32 residual stream, whatever dtype the tables are stored in
        x = x0 = F.rms_norm(self.embed(idx).float(), (C,))  # (B, T, C)
        ves = [table(idx) for table in self.value_embeds]  # each (B, T, C), looked up once for its two blocks
        skips = []
        half = self.cfg.n_layer // 2
        for i, block in enumerate(self.blocks):
            if self.skip_weights is not None and i >= self.cfg.n_layer - half:
                x = x + self.skip_weights[self.cfg.n_layer - 1 - i] * skips.pop()
            table = self.ve_plan[i]
            x = block(x, x0, ves[table] if table is not None else None, self.window)
            if self.skip_weights is not None and i < half:
                skips.append(x)
        x = self.norm_f(x)
        if self.cfg.head_rank:
            x = self.head_down(x)
        return self.lm_head(x)  # (B, T, vocab_size), fp16 under autocast

    def forward(self, idx, targets=None):
        """idx (B, T) int64 -> logits (B, T, vocab_size), biased and soft-capped; with targets (B, T) -> mean loss."""
        z = self.head(idx)
        if targets is None:
            return output_logits(z, self.logit_bias, self.cfg.logit_softcap)
        return lm_loss(z, self.logit_bias, self.cfg.logit_softcap, targets, self.cfg.real_vocab_size)

    def param_counts(self) -> dict[str, int]:
        """parameters by role. `matmul` (blocks + head) is the n of 6·n·tokens; embeddings are lookups."""
        blocks = sum(p.numel() for p in self.blocks.parameters()) + sum(p.numel() for p in self.norm_f.parameters())
        head = self.lm_head.weight.numel() + (self.head_down.weight.numel() if self.cfg.head_rank else 0)
        embedding = self.embed.weight.numel()
        value_embeds = sum(p.numel() for p in self.value_embeds.parameters())
        other = sum(p.numel() for p in self.parameters()) - blocks - head - embedding - value_embeds
        return {"total": blocks + head + embedding + value_embeds + other, "blocks": blocks, "head": head,
                "embedding": embedding, "value_embeds": value_embeds, "matmul": blocks + head}


def output_logits(z, bias, cap: float):
    """the head's output (B, T, V) -> the logits: plus the learned bias (if any), then cap · tanh(z / cap) (cap 0: none)."""
    if bias is not None:
        z = z + bias.to(z.dtype)
    return cap * torch.tanh(z / cap) if cap else z


def lm_loss(z, bias, cap: float, targets, real_vocab_size: int):
    """float32 cross-entropy of the logits over the real vocabulary, as the harness evaluates it: (B, T, V), (B, T) -> mean."""
    real = output_logits(z, bias, cap)[..., :real_vocab_size].float()
    return F.cross_entropy(real.reshape(-1, real.size(-1)), targets.reshape(-1))


def inference_copy(model: GPT, dtype: torch.dtype) -> GPT:
    """the model the evaluation forward reads: a copy with every matrix and table stored in dtype
    (fp16 halves the bytes handed over at the end of training); gains and mixing scalars stay float32."""
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in twin.parameters():
            if p.dim() == 2 and p.is_floating_point():
                p.data = p.data.to(dtype)
        if twin.logit_bias is not None:
            twin.logit_bias.data = twin.logit_bias.data.to(dtype)
    twin.requires_grad_(False)
    return twin
