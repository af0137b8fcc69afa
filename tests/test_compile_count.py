"""compiles_in_timed counts only compiles while the train clock runs, not those in eval pauses."""
import importlib

import torch

from supervisor.tracks import get_track

hs = importlib.import_module("harness.session")  # the module (the package's `session` is the function)


class Counter:
    """stands in for torch's compile counter: tests bump it where a compile would happen."""
    n = 0

    def __call__(self):
        return self.n


def test_compiles_during_eval_are_not_timed(tmp_path, tiny_data, monkeypatch):
    counter = Counter()
    monkeypatch.setattr(hs, "compile_count", counter)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"run_id": "t", "record": "t", "record_sha256": "0", "scale": "smoke", "seed": 1,
              "track": get_track("demo").to_dict(), "data_dir": str(tiny_data), "seq_len": 16, "batch_size": 2,
              "grad_accum": 1, "steps": 3, "budget_tokens": 96, "args": {}, "warmup_cap_s": 60,
              "run_dir": str(run_dir), "contract_version": 1}
    h = hs.Session(config)
    model = torch.nn.Sequential(torch.nn.Embedding(100288, 8), torch.nn.Linear(8, 100288))

    def forward(x):
        counter.n += 5          # e.g. a new eval shape recompiling: untimed
        return model(x)

    h.next_batch()              # the clock starts
    counter.n += 2              # two compiles inside the timed region
    h.log_step(1, 1.0)
    h.evaluate(forward, 1, val_tokens=64)
    h.next_batch()
    counter.n += 1              # one more while timed
    h.log_step(2, 1.0)
    summary = h.finish(forward)
    assert summary["compiles_in_timed"] == 3
