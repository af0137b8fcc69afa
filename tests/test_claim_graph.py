"""the claim's model outside the record's process: the handover's weights and exported forward
(harness/handover.py) bound by the scorer (supervisor/graph.py), and what it refuses."""
from __future__ import annotations

import io
import os
import pickle
import types

import pytest
import torch
import torch.nn as nn

from harness import handover
from supervisor import graph
from supervisor.scorer import score

V, T = 64, 8


class Tiny(nn.Module):
    def __init__(self, peek: bool = False):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.head = nn.Linear(16, V, bias=False)
        self.register_buffer("scale", torch.ones(16), persistent=False)
        self.peek = peek

    def forward(self, x):                                   # (B, T) -> (B, T, V)
        e = torch.cumsum(self.emb(x), dim=1) * self.scale    # causal: a running sum of the past
        logits = self.head(e)
        if self.peek:                                       # the next input token, +30
            logits = logits + 30.0 * nn.functional.one_hot(torch.roll(x, -1, dims=1), V).float()
        return logits


def hand_over(model, folder, forward=None):
    forward = forward or model
    sess = types.SimpleNamespace(eval_batch_size=4, eval_seq_len=T, vocab_size=V, device="cpu")
    modules, tensors = handover.forward_modules(forward)
    claim = handover.claim_model(forward, modules, tensors)
    index = handover.write_weights(claim, folder)
    handover.export_forward(claim, sess, folder)
    return index


def test_the_bound_graph_computes_the_handed_over_model(tmp_path):
    model = Tiny().eval()
    index = hand_over(model, tmp_path)
    assert {e["name"] for e in index["tensors"]} == {"m0.emb.weight", "m0.head.weight", "m0.scale"}
    ep = graph.load_program(tmp_path / "forward.pt2")
    assert graph.check_ops(ep)["nodes"] > 0
    gm, bound = graph.bind(ep, graph.read_weights(tmp_path, "cpu"))
    x = torch.randint(0, V, (3, T))
    assert bound == 3 and torch.equal(gm(x), model(x))      # another batch size than the export's


def test_weights_trained_after_the_handover_are_not_the_ones_scored(tmp_path):
    model = Tiny().eval()
    handover.write_weights(handover.claim_model(model, [model], []), tmp_path)
    before = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)                          # trained on after the clock stopped
    handover.export_forward(handover.claim_model(model, [model], []),
                            types.SimpleNamespace(eval_batch_size=4, eval_seq_len=T, vocab_size=V, device="cpu"), tmp_path)
    gm, _ = graph.bind(graph.load_program(tmp_path / "forward.pt2"), graph.read_weights(tmp_path, "cpu"))
    assert torch.equal(gm.m0.head.weight, before)


def test_a_graph_reading_a_tensor_the_handover_did_not_write_is_refused(tmp_path):
    model = Tiny().eval()
    hand_over(model, tmp_path)
    weights = graph.read_weights(tmp_path, "cpu")
    ep = graph.load_program(tmp_path / "forward.pt2")
    with pytest.raises(graph.GraphRefused, match="m0.head.weight, which the handover did not write"):
        graph.bind(ep, {k: v for k, v in weights.items() if k != "m0.head.weight"})
    with pytest.raises(graph.GraphRefused, match="the graph has"):
        graph.bind(ep, {**weights, "m0.head.weight": torch.zeros(3, 3)})


def test_a_graph_that_calls_a_file_reading_operator_is_refused(tmp_path):
    hand_over(Tiny().eval(), tmp_path)
    ep = graph.load_program(tmp_path / "forward.pt2")
    g = ep.graph_module.graph
    out = next(n for n in g.nodes if n.op == "output")
    with g.inserting_before(out):
        g.call_function(torch.ops.aten.from_file.default, ("/data/val.bin",))
    with pytest.raises(graph.GraphRefused, match="from_file"):
        graph.check_ops(ep)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch payload-ran",))


def test_loading_a_graph_runs_no_pickle_of_the_records(tmp_path, monkeypatch):
    import torch._export.serde.serialize as serde

    monkeypatch.chdir(tmp_path)
    hand_over(Tiny().eval(), tmp_path)
    graph.load_program(tmp_path / "forward.pt2")           # installs the weights-only loader
    buf = io.BytesIO()
    torch.save({"x": Payload()}, buf)
    with pytest.raises(pickle.UnpicklingError):
        serde.deserialize_torch_artifact(buf.getvalue())
    assert not (tmp_path / "payload-ran").exists()


def test_the_scorer_finds_a_peek_and_passes_an_honest_model(tmp_path):
    tokens = torch.randint(0, V, (4 * T * 6 + 1,))
    req = {"vocab_size": V, "eval_seq_len": T, "eval_batch_size": 4}
    honest = score(Tiny().eval(), tokens, tokens.flip(0), req, "cpu")
    assert honest["causality"]["passed"] and honest["causality"]["stateless"] and honest["val_tokens"] == 24 * T
    assert honest["cost"]["calls"] > honest["val_tokens"] // (4 * T)   # the probe's and the repeat's calls counted
    peeking = score(Tiny(peek=True).eval(), tokens, tokens.flip(0), req, "cpu")
    assert not peeking["causality"]["passed"] and peeking["causality"]["max_leak"] >= 29


def test_a_forward_that_remembers_its_calls_fails_the_repeat():
    seen = []
    model = Tiny().eval()

    def forward(x):
        seen.append(1)
        return model(x) + 0.01 * len(seen)                    # answers drift with every call

    tokens = torch.randint(0, V, (4 * T * 6 + 1,))
    out = score(forward, tokens, tokens.flip(0), {"vocab_size": V, "eval_seq_len": T, "eval_batch_size": 4}, "cpu")
    assert out["causality"]["stateless"] is False and out["causality"]["passed"] is False
