"""records/baseline_adamw_epoch: baseline_adamw's recipe for exactly one epoch of the docs train split."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from supervisor.stream import TrainStream, heldout_tokens_for
from supervisor.tracks import get_track
from nanopoor.records import check_frozen, load_record

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "records" / "baseline_adamw_epoch"


def served_epochs(train_tokens: int, scale: dict, steps: int) -> int:
    """serve `steps` steps of the scale through the harness's own stream; the epoch it ends in."""
    val = get_track("docs").val_tokens
    shard = np.empty(train_tokens, np.uint8)        # only the length matters to the window layout
    stream = TrainStream([shard], scale["seq_len"], scale["batch_size"],
                         steps * scale["grad_accum"] * scale["batch_size"] * scale["seq_len"], seed=1,
                         heldout_tokens=heldout_tokens_for(train_tokens, val))
    for _ in range(steps * scale["grad_accum"]):
        stream.next_indices()
    return stream.epoch


def test_the_full_scale_is_exactly_one_epoch_of_the_docs_train_split():
    rec = load_record(RECORD)
    check_frozen(rec)
    full = rec.scale("full")
    train_tokens = json.loads((ROOT / "corpus" / "docs" / "build.json").read_text())["train_tokens"]
    assert full["track"] == "docs"
    assert served_epochs(train_tokens, full, full["steps"]) == 0        # every step in the first epoch
    assert served_epochs(train_tokens, full, full["steps"] + 1) == 1    # one more would repeat data
    assert full["args"]["eval_every"] >= 50 and full["args"]["eval_tokens"] < get_track("docs").val_tokens


def test_its_code_is_baseline_adamws_recipe():
    """the model file is identical; train.py differs only in its docstring and the record's name."""
    base, epoch = ROOT / "records" / "baseline_adamw", RECORD
    assert (base / "model.py").read_bytes() == (epoch / "model.py").read_bytes()
    a = (base / "train.py").read_text().split('"""', 2)[2].replace("baseline_adamw", "RECORD")
    b = (epoch / "train.py").read_text().split('"""', 2)[2].replace("baseline_adamw_epoch", "RECORD")
    assert a == b
    base_full, epoch_full = load_record(base).scale("full"), load_record(epoch).scale("full")
    for k in ("seq_len", "batch_size", "grad_accum"):
        assert base_full[k] == epoch_full[k]


@pytest.mark.slow
def test_smoke_scale_runs_on_the_cpu(tiny_data, tmp_path, app):
    res = CliRunner().invoke(app, ["run", str(RECORD), "--scale", "smoke", "--data", str(tiny_data),
                                   "--runs", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output[res.output.index("{"):])
    assert r["status"] == "completed" and r["causal"] is True and r["val_loss"] < math.log(100277)
