"""build defaults, in a module light enough for the cli to import at start-up."""
from __future__ import annotations

DEFAULT_SHARD_TOKENS = 100_000_000           # tokens per shard, as modded-nanogpt
DEFAULT_FINEWEB_TRAIN_TOKENS = 1_000_000_000
DEFAULT_LOCAL_VAL_TOKENS = 524_288           # `data files` when --dataset names no track
DEFAULT_SHUFFLE_SEED = 1234
# the tokenizer's facts (nanopoor.data.tokenizer checks them against tiktoken's tables): here, so a
# writer of token ids (the tests' datasets, a gpu machine without tiktoken) needs no tiktoken
TOKENIZER_NAME = "cl100k_base"
EOT_ID = 100257
VOCAB_SIZE = 100277  # largest id + 1, special tokens included


def track_val_tokens(dataset: str) -> int | None:
    """the val split size of the track for `dataset` (supervisor/tracks.toml), or None when no track names it."""
    from supervisor.tracks import load_tracks

    for t in load_tracks().values():
        if t.dataset == dataset:
            return t.val_tokens
    return None
