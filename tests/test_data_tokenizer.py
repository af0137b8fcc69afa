"""cl100k_base offline, and the batch encoder: identical to encode_ordinary, eot before each document."""
from __future__ import annotations

import numpy as np

from nanopoor.data.tokenizer import (
    EOT_ID, VOCAB_SIZE, DocEncoder, batch_texts, encode_texts, get_encoding,
)

TEXTS = [
    "Hello world",
    "",
    "a literal <|endoftext|> inside a document is text",
    "other specials: <|fim_prefix|> <|endofprompt|>",
    "   \n\n  trailing whitespace   ",
    "ünïcödé — 漢字 🙂",
    "",
    "x",
    "\n",
]


def _reference(texts):
    enc = get_encoding()
    out, starts = [], []
    for t in texts:
        starts.append(len(out))
        if t:
            out.append(EOT_ID)
            out.extend(enc.encode_ordinary(t))
    return out, starts


def test_encoding_is_cl100k_base_built_offline():
    enc = get_encoding()
    assert enc.name == "cl100k_base"
    assert enc.eot_token == EOT_ID == 100257
    assert enc.n_vocab == VOCAB_SIZE == 100277
    assert enc.encode_ordinary("hello world") == [15339, 1917]


def test_encode_texts_matches_encode_ordinary():
    tokens, starts = encode_texts(TEXTS)
    ref, ref_starts = _reference(TEXTS)
    assert tokens.dtype == np.uint32
    assert tokens.tolist() == ref
    assert starts.tolist() == ref_starts
    # the literal special-token text stays ordinary text: eot appears only at document starts
    assert np.count_nonzero(tokens == EOT_ID) == sum(1 for t in TEXTS if t)


def test_doc_encoder_batches_in_order():
    texts = [f"document {i} " + "word " * (i % 13) for i in range(500)] + TEXTS
    with DocEncoder(threads=2) as enc:
        got = list(enc.encode(batch_texts(texts, batch_chars=700)))
    assert len(got) > 3
    tokens = np.concatenate([t for t, _ in got])
    ref, _ = _reference(texts)
    assert tokens.tolist() == ref
    for _t, s in got:
        assert len(s) == 0 or s[0] == 0
