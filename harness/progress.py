"""a progress loss, computed in the record's process for the record's own display.

the same measure as the claim's (mean float32 cross-entropy over the real vocabulary, windows of
eval_seq_len inputs in order, batch eval_batch_size, split over ranks and all-reduced), on the
progress slice. it is never a number on the board: the supervisor logs it as the record's report."""
from __future__ import annotations


def progress_loss(forward, tokens, sess) -> tuple[float, int]:
    """(mean loss, predicted tokens) of forward over a 1-d token tensor on the device."""
    import torch
    import torch.nn.functional as F

    from harness.handover import forward_modules

    T, B, V = sess.eval_seq_len, sess.eval_batch_size, sess.vocab_size
    windows = max(0, (tokens.numel() - 1) // T)
    mine = list(range(sess.rank, windows, sess.world_size))
    modules = forward_modules(forward)[0]
    modes = [(m, m.training) for m in modules]
    for m, _ in modes:
        m.eval()
    total = torch.zeros((), dtype=torch.float64, device=sess.device)
    count = torch.zeros((), dtype=torch.float64, device=sess.device)
    offsets = torch.arange(T + 1, device=tokens.device)
    try:
        with torch.no_grad():
            for b in range(0, len(mine), B):
                starts = torch.tensor(mine[b:b + B], device=tokens.device)[:, None] * T
                chunk = tokens[starts + offsets]                       # (B, T + 1)
                logits = forward(chunk[:, :-1])                        # (B, T, V_padded)
                flat, y = logits.flatten(0, 1), chunk[:, 1:].flatten()
                # float32 a slice of rows at a time: a whole batch's float32 logits would be gigabytes
                rows = max(1, (1 << 27) // flat.shape[-1])
                for r in range(0, flat.shape[0], rows):
                    total += F.cross_entropy(flat[r:r + rows, :V].float(), y[r:r + rows], reduction="sum").double()
                count += chunk[:, 1:].numel()
    finally:
        for m, mode in modes:
            m.train(mode)
    if sess.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(total)
        dist.all_reduce(count)
    n = int(count.item())
    return (total / max(n, 1)).item(), n
