"""NanoPoor's model, re-implemented strictly causal: a GPT whose attention is multi-head latent
attention (MLA) feeding native-sparse-attention (NSA) style branches, and whose feed-forward
layers alternate between a dense MLP and a DeepSeek-style mixture of experts.

every statistic is per token: nothing is pooled over sequence positions or batch rows, so the
harness's perturbation check holds. the expert-balancing bias changes only between training
steps (update_expert_bias), never inside a forward."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 100277     # real vocabulary (cl100k_base); the table is padded to a multiple of 64
    seq_len: int = 1024          # longest sequence the rope tables cover
    n_layer: int = 8             # transformer blocks
    n_embd: int = 512            # residual stream width
    n_head: int = 8              # attention heads
    q_rank: int = 256            # mla: queries go through a low-rank latent of this width
    kv_rank: int = 256           # mla: keys/values are up-projected from a shared latent c_kv of this width
    head_dim: int = 64           # per-head width of the no-rope query/key part and of the values
    rope_dim: int = 32           # mla: decoupled rope part of queries/keys; one rope key shared by all heads
    nsa_block: int = 32          # nsa: block length l of the compressed and selected branches (stride l)
    nsa_select: int = 4          # nsa: blocks each query selects, besides the block it sits in
    nsa_window: int = 128        # nsa: sliding-window branch width w (the query's own token included)
    mlp_hidden: int = 1536       # hidden width of the dense mlp layers (3 x n_embd)
    moe_every: int = 2           # layers i with i % moe_every == moe_every - 1 are moe (1, 3, 5, 7)
    n_experts: int = 16          # routed experts per moe layer (one shared expert comes on top)
    top_k: int = 2               # routed experts each token uses
    expert_hidden: int = 768     # hidden width of every expert, shared and routed
    rope_base: float = 10000.0   # rope frequency base

    @property
    def padded_vocab(self) -> int:
        return 64 * math.ceil(self.vocab_size / 64)

    def is_moe(self, layer: int) -> bool:
        return layer % self.moe_every == self.moe_every - 1


# -----------------------------------------------------------------------------------------------
# rotary embeddings on the decoupled rope part

def rope_tables(dim: int, seq_len: int, base: float):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, dim/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    # x: (B, H, T, dim); cos/sin: (T, dim/2). rotate pairs (first half, second half)
    T = x.size(-2)
    cos, sin = cos[:T].to(x.dtype), sin[:T].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# -----------------------------------------------------------------------------------------------
# attention: mla projections, three nsa branches, a per-position gate

class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        H, dh, dr = cfg.n_head, cfg.head_dim, cfg.rope_dim
        # queries: x -> latent (q_rank) -> per-head no-rope and rope parts
        self.q_down = nn.Linear(cfg.n_embd, cfg.q_rank, bias=False)
        self.q_norm = nn.RMSNorm(cfg.q_rank)
        self.q_up = nn.Linear(cfg.q_rank, H * (dh + dr), bias=False)
        # keys/values: x -> latent c_kv (kv_rank) -> per-head k_nope and v; plus one rope key
        self.kv_down = nn.Linear(cfg.n_embd, cfg.kv_rank, bias=False)
        self.kv_norm = nn.RMSNorm(cfg.kv_rank)
        self.k_up = nn.Linear(cfg.kv_rank, H * dh, bias=False)
        self.v_up = nn.Linear(cfg.kv_rank, H * dh, bias=False)
        self.k_rope = nn.Linear(cfg.n_embd, dr, bias=False)
        # gate: sigmoid of a linear of the query position's own hidden state, 3 branches per head
        self.gate = nn.Linear(cfg.n_embd, 3 * H, bias=True)
        self.proj = nn.Linear(H * dh, cfg.n_embd, bias=False)
        cos, sin = rope_tables(dr, cfg.seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, x):
        cfg = self.cfg
        B, T, C = x.shape
        H, dh, dr, l = cfg.n_head, cfg.head_dim, cfg.rope_dim, cfg.nsa_block

        q = self.q_up(self.q_norm(self.q_down(x))).view(B, T, H, dh + dr).transpose(1, 2)  # (B, H, T, dh+dr)
        q_nope, q_pe = q.split([dh, dr], dim=-1)
        q = torch.cat([q_nope, apply_rope(q_pe, self.rope_cos, self.rope_sin)], dim=-1)
        c_kv = self.kv_norm(self.kv_down(x))                                # (B, T, kv_rank)
        k_nope = self.k_up(c_kv).view(B, T, H, dh).transpose(1, 2)          # (B, H, T, dh)
        v = self.v_up(c_kv).view(B, T, H, dh).transpose(1, 2)               # (B, H, T, dh)
        k_pe = apply_rope(self.k_rope(x).view(B, 1, T, dr), self.rope_cos, self.rope_sin)  # (B, 1, T, dr)
        k = torch.cat([k_nope, k_pe.expand(B, H, T, dr)], dim=-1)           # (B, H, T, dh+dr)

        pos = torch.arange(T, device=x.device)
        # --- compressed branch: mean-pooled blocks of l keys/values; a query sees block j only
        # once the whole block is in its past, i.e. the block ends at (j+1)*l - 1 <= t
        nb = (T + l - 1) // l
        pad = nb * l - T
        k_cmp = F.pad(k, (0, 0, 0, pad)).view(B, H, nb, l, dh + dr).mean(dim=3)  # (B, H, nb, dh+dr)
        v_cmp = F.pad(v, (0, 0, 0, pad)).view(B, H, nb, l, dh).mean(dim=3)       # (B, H, nb, dh)
        block_end = torch.arange(nb, device=x.device) * l + (l - 1)
        seen = block_end[None, :] <= pos[:, None]                           # (T, nb) complete blocks in the past
        scores = (q @ k_cmp.transpose(-1, -2)) / math.sqrt(dh + dr)       # (B, H, T, nb)
        # a finite fill (the dtype's lowest: fp16 under autocast), a float32 softmax, then
        # zeroing: rows with no complete block yet get exactly nothing, and no nan
        fill = torch.finfo(scores.dtype).min
        p_cmp = torch.softmax(scores.masked_fill(~seen, fill), dim=-1, dtype=torch.float32) * seen
        o_cmp = p_cmp.to(v_cmp.dtype) @ v_cmp                               # (B, H, T, dh)

        # --- selected branch: each query picks its top-n complete past blocks by compressed
        # attention mass (summed over heads, as NSA shares a selection across a head group),
        # plus the block it sits in; it then attends to those blocks' tokens, causally
        importance = p_cmp.detach().sum(dim=1).masked_fill(~seen, -1.0)     # (B, T, nb)
        n_sel = min(cfg.nsa_select, nb)
        top = importance.topk(n_sel, dim=-1).indices                        # (B, T, n_sel)
        chosen = torch.zeros(B, T, nb, dtype=torch.bool, device=x.device).scatter_(-1, top, True)
        own = (pos // l)[:, None] == torch.arange(nb, device=x.device)[None, :]  # (T, nb)
        chosen = (chosen & seen) | own
        causal = pos[None, :] <= pos[:, None]                               # (T, T) key <= query
        sel_mask = chosen.repeat_interleave(l, dim=-1)[..., :T] & causal    # (B, T, T)
        o_sel = F.scaled_dot_product_attention(q, k, v, attn_mask=sel_mask.unsqueeze(1))

        # --- sliding-window branch: the last w tokens, the query's own included
        win_mask = causal & (pos[:, None] - pos[None, :] < cfg.nsa_window)  # (T, T)
        o_win = F.scaled_dot_product_attention(q, k, v, attn_mask=win_mask)

        # --- gate per position and head, from the query position's own hidden state
        g = torch.sigmoid(self.gate(x)).view(B, T, H, 3).permute(0, 2, 1, 3)  # (B, H, T, 3)
        y = g[..., 0:1] * o_cmp + g[..., 1:2] * o_sel + g[..., 2:3] * o_win  # (B, H, T, dh)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * dh))


# -----------------------------------------------------------------------------------------------
# feed-forward: dense mlp and deepseek-style moe

class MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class MoE(nn.Module):
    """one shared expert every token uses, plus top-k of n routed experts chosen per token.

    routing (auxiliary-loss-free balancing): scores = sigmoid(x W_r); the top-k are chosen on
    scores + expert_bias, the bias steering selection only; the chosen scores, normalised, weight
    the experts' outputs. the bias moves between steps (update_expert_bias), from the loads this
    layer counted during training forwards."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)
        self.shared = MLP(cfg.n_embd, cfg.expert_hidden)
        self.experts = nn.ModuleList(MLP(cfg.n_embd, cfg.expert_hidden) for _ in range(cfg.n_experts))
        self.register_buffer("expert_bias", torch.zeros(cfg.n_experts))
        # tokens each routed expert received since the last bias update (training forwards only)
        self.register_buffer("expert_load", torch.zeros(cfg.n_experts), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        flat = x.reshape(B * T, C)                                          # (N, C)
        scores = torch.sigmoid(self.router(flat).float())                   # (N, E)
        chosen = torch.topk(scores + self.expert_bias, self.cfg.top_k, dim=-1).indices  # (N, k)
        weights = scores.gather(1, chosen)
        weights = weights / weights.sum(dim=-1, keepdim=True)               # (N, k)
        routed = self._dispatch(flat, chosen, weights)
        return (self.shared(flat) + routed.to(flat.dtype)).view(B, T, C)

    @torch.compiler.disable  # token counts per expert are data-dependent: this part runs eagerly
    def _dispatch(self, flat, chosen, weights):
        N, k = chosen.shape
        E = self.cfg.n_experts
        expert_of_slot = chosen.reshape(-1)                                 # (N*k,)
        order = torch.argsort(expert_of_slot, stable=True)                  # slots grouped by expert
        counts = torch.bincount(expert_of_slot, minlength=E)                # (E,)
        if self.training and torch.is_grad_enabled():
            self.expert_load += counts.to(self.expert_load.dtype)
        xs = flat[order // k]                                               # (N*k, C) tokens, sorted by expert
        outs = [self.experts[e](chunk) for e, chunk in enumerate(torch.split(xs, counts.tolist())) if chunk.numel()]
        ys = torch.cat(outs) if outs else xs.new_zeros(0, flat.size(1))    # (N*k, C)
        # back to (token, slot) order without atomics, so the sum is deterministic
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        ys = ys[inverse].view(N, k, -1).float()
        return (ys * weights.unsqueeze(-1)).sum(dim=1)                      # (N, C)


@torch.no_grad()
def update_expert_bias(model: nn.Module, rate: float) -> None:
    """after an optimizer step: bias += rate * sign(mean load - load), then reset the counts.
    underloaded experts become likelier to be chosen, overloaded ones less."""
    for m in model.modules():
        if isinstance(m, MoE):
            load = m.expert_load
            if load.sum() > 0:
                m.expert_bias += rate * torch.sign(load.mean() - load)
            load.zero_()


@torch.no_grad()
def reset_expert_load(model: nn.Module) -> None:
    """forget the loads counted so far (e.g. by warm-up forwards on dummy data)."""
    for m in model.modules():
        if isinstance(m, MoE):
            m.expert_load.zero_()


# -----------------------------------------------------------------------------------------------
# the model

class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.n_embd)
        self.ffn = MoE(cfg) if cfg.is_moe(layer) else MLP(cfg.n_embd, cfg.mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        # one table for the embedding and the output head (tied), padded to a multiple of 64
        self.wte = nn.Embedding(cfg.padded_vocab, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.n_embd)
        self.apply(self._init_weights)
        # residual projections start small so the stream grows slowly with depth
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def hidden(self, idx):
        # idx: (B, T) int64 -> (B, T, C) final-normed hidden states
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x)
        return self.norm_f(x)

    def forward(self, idx):
        # logits over the padded vocabulary (B, T, V_pad); the harness slices to the real vocab
        return F.linear(self.hidden(idx), self.wte.weight)

    def loss(self, idx, targets):
        return self.head_loss(self.hidden(idx), targets)

    @torch.compiler.disable  # a hand-written forward/backward; it is matmul-bound and runs eagerly
    def head_loss(self, h, targets, chunk_rows: int = 1024):
        # mean next-token cross-entropy from the hidden states h (B, T, C), computed chunk by
        # chunk so the (B*T, V) logits never exist at once (6 x 1024 x 100k in fp32 is 2.5 GB)
        B, T, C = h.shape
        dtype = torch.float16 if torch.is_autocast_enabled("cuda") else h.dtype
        return ChunkedLinearCrossEntropy.apply(h.reshape(B * T, C), self.wte.weight, targets.reshape(-1),
                                               self.cfg.vocab_size, chunk_rows, dtype)

    def param_counts(self) -> dict:
        """total parameters, and the ones one token uses: everything but the routed experts it was
        not sent to. the tied embedding/head table is counted once; buffers are not parameters."""
        total = sum(p.numel() for p in self.parameters())
        inactive = 0
        for m in self.modules():
            if isinstance(m, MoE):
                per_expert = sum(p.numel() for p in m.experts[0].parameters())
                inactive += (m.cfg.n_experts - m.cfg.top_k) * per_expert
        return {"total": total, "active": total - inactive, "embedding": self.wte.weight.numel()}


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean cross-entropy of h @ w.T (real vocab columns only) against y.

    the gradient is computed during the forward, one chunk of rows at a time, and kept: the
    backward only scales it. memory: one chunk of logits plus grads shaped like h and w."""

    @staticmethod
    def forward(ctx, h, w, y, vocab_size: int, chunk_rows: int, dtype):
        # h: (N, C); w: (V_pad, C); y: (N,) int64
        N = h.size(0)
        w_real = w[:vocab_size].to(dtype)                                   # (V, C)
        grad_h = torch.empty(h.shape, dtype=dtype, device=h.device)
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, N, chunk_rows):
            hc = h[start:start + chunk_rows].to(dtype)                      # (n, C)
            yc = y[start:start + chunk_rows]
            logits = (hc @ w_real.T).float()                                # (n, V)
            lse = torch.logsumexp(logits, dim=-1)
            loss_sum += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            g = torch.exp(logits - lse[:, None])                            # softmax
            g[torch.arange(len(yc), device=g.device), yc] -= 1.0            # d loss_sum / d logits
            g = g.to(dtype)
            grad_h[start:start + chunk_rows] = g @ w_real
            grad_w[:vocab_size] += (g.T @ hc).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n, ctx.h_dtype, ctx.w_dtype = N, h.dtype, w.dtype
        return loss_sum / N

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out.float() / ctx.n
        return (grad_h.float() * scale).to(ctx.h_dtype), (grad_w * scale).to(ctx.w_dtype), None, None, None, None
