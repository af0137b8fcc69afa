"""the cpu tests that dense_muon_t4_ddp_v3 and its successors v4, v5 and v6 share, as a class
each record's test module subclasses (tests/test_record_ddp_v3.py to _v6.py): the records
run through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu). one process trains like
dense_muon_t4_v2; more ranks train like one within float32 rounding and end with identical
replicas; newton-schulz is dealt by cost; the gpu path's optimizer step runs on the cpu.

smoke (4 rows x 2 slices a step): 2 ranks take one micro-step of 2 x 2 stacked rows, 4 ranks one
of 2 x 1; smoke_accum (2 rows x 4 slices): 2 ranks take two micro-steps, the first under no_sync,
so the embedding's gathered gradient spans two micro-batches; smoke_compiled: torch.compile around
DDP with the warm-up's optimizer step."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from ddp_runs import assert_identical_replicas, run_alone, run_jobs

ROOT = Path(__file__).resolve().parents[1]
PARENT = ROOT / "records" / "dense_muon_t4_v2"
SEED = 7
# as in tests/test_record_ddp_v2.py: the ranks differ from one process by float32 summation
# order (~1e-6 after 4 smoke steps); another seed moves the losses by ~1e-2
LOSS_TOLERANCE = 1e-4


def step_losses(run: dict) -> dict[int, float]:
    return {e["step"]: e["train_loss"] for e in run["events"] if e["type"] == "step"}


def load_optim(record: Path):
    """the record's own optim.py, under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"{record.name}_optim", record / "optim.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


class DdpRecordCases:
    """a subclass names RECORD (the record folder) and how its LossScaler unscales a weight w and
    a second gradient e (`unscale`)."""

    RECORD: Path
    EXTRA_JOBS: dict = {}  # more runs for the class's own tests: name -> (scale, nproc)

    def unscale(self, scaler, w, e):
        return scaler.unscale([w, e])

    @pytest.fixture(scope="class")
    @classmethod
    def runs(cls, tiny_data, tmp_path_factory) -> dict[str, dict]:
        rec = cls.RECORD
        jobs = {"parent": (PARENT, "smoke", 1), "one": (rec, "smoke", 1), "two": (rec, "smoke", 2),
                "four": (rec, "smoke", 4), "accum_two": (rec, "smoke_accum", 2)}
        jobs |= {name: (rec, scale, nproc) for name, (scale, nproc) in cls.EXTRA_JOBS.items()}
        return run_jobs(jobs, tiny_data, tmp_path_factory.mktemp(f"{rec.name}_record"), SEED)

    @pytest.mark.slow
    def test_every_rank_count_completes_with_the_same_tokens(self, runs):
        for name, r in runs.items():
            assert r["status"] == "completed", (name, r["reason"], r["log"][-2000:])
            assert r["causal"] is True, name
            assert r["tokens"] == r["budget_tokens"] == 64 * 8 * 4, name  # counted once, globally
        assert [runs[n]["nproc"] for n in ("one", "two", "four", "accum_two")] == [1, 2, 4, 2]

    @pytest.mark.slow
    def test_one_process_is_dense_muon_t4_v2(self, runs):
        """one process: v2's losses at every logged step (eval_every = 2 in smoke: steps 2 and 4)."""
        parent, one = step_losses(runs["parent"]), step_losses(runs["one"])
        assert sorted(one) == [2, 4] and len(parent) == 4  # the loss is read back at evaluations only
        assert max(abs(one[s] - parent[s]) for s in one) < 1e-6, (one, parent)
        assert abs(runs["one"]["val_loss"] - runs["parent"]["val_loss"]) < 1e-6

    @pytest.mark.slow
    @pytest.mark.parametrize("name, micro", [("two", "1 micro-steps of 4 x 64"), ("four", "1 micro-steps of 2 x 64"),
                                             ("accum_two", "2 micro-steps of 2 x 64")])
    def test_ranks_train_like_one_process(self, runs, name, micro):
        one, many = runs["one"], runs[name]
        assert f"{many['nproc']} rank(s), {micro} per rank per step" in many["log"]  # the path this run takes
        a, b = step_losses(one), step_losses(many)
        assert sorted(a) == sorted(b) == [2, 4]
        assert max(abs(a[s] - b[s]) for s in a) < LOSS_TOLERANCE, (a, b)
        assert abs(one["val_loss"] - many["val_loss"]) < LOSS_TOLERANCE
        assert one["val_loss"] < math.log(100277)  # and it did learn something

    @pytest.mark.slow
    @pytest.mark.parametrize("name", ["one", "two", "four", "accum_two"])
    def test_replicas_end_identical(self, runs, name):
        assert_identical_replicas(runs[name])

    @pytest.mark.slow
    @pytest.mark.archive   # 40 s of inductor on 2 cores: make test-all runs it; the gpu scripts run this path for real
    def test_compiled_around_ddp_trains_like_eager(self, runs, tiny_data, tmp_path):
        r = run_alone(tmp_path, tiny_data, "compiled", self.RECORD, "smoke_compiled", 2, SEED)
        assert r["status"] == "completed", (r["reason"], r["log"][-2000:])
        assert r["compiles_in_timed"] == 0
        assert_identical_replicas(r)
        a, b = step_losses(runs["one"]), step_losses(r)
        assert max(abs(a[s] - b[s]) for s in a) < LOSS_TOLERANCE, (a, b)

    def test_newton_schulz_is_dealt_by_cost(self):
        """the full model's 24 matrices: every rank gets work, the largest load within 6% of even
        (v2's equal shares of each shape left one of 4 ranks idle and another at 4/3 of even)."""
        optim = load_optim(self.RECORD)
        shapes = [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 6  # c_qkv, attn c_proj, c_fc, mlp c_proj
        cost = [min(s) ** 2 * max(s) for s in shapes]
        for world in (1, 2, 4):
            owner = optim.plan(shapes, world)
            load = [sum(c for c, o in zip(cost, owner) if o == r) for r in range(world)]
            assert min(load) > 0 and max(load) <= 1.06 * sum(cost) / world, (world, load)
            assert owner == optim.plan(shapes, world)  # every rank computes the same plan

    def test_the_gpu_optimizer_step_runs_on_the_cpu(self):
        """the cuda path's pieces, run on the cpu where torch has them: the enabled LossScaler, fused
        AdamW and muon reading one flag. a clean step moves the weights and keeps the scale; an
        overflowed step moves nothing, leaves muon's momentum and AdamW's step count alone, and halves
        the scale, as GradScaler would."""
        import torch

        optim = load_optim(self.RECORD)
        torch.manual_seed(0)
        w, e = torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(16, 4))
        muon = optim.Muon([w], lr=0.02)
        adamw = torch.optim.AdamW([e], lr=0.1, fused=True)
        scaler = optim.LossScaler("cpu", enabled=True)

        def step(poison: bool):
            loss = (w.sum() + e.square().sum()) * (float("inf") if poison else 1.0)
            scaler.scale(loss).backward()
            found = self.unscale(scaler, w, e)
            assert found.dim() == 0
            for opt in (adamw, muon):
                opt.found_inf = found
            muon.apply(muon.launch())
            adamw.step()
            scaler.update(found)
            for opt in (adamw, muon):
                del opt.found_inf
            w.grad = e.grad = None
            return found.item()

        w0, e0 = w.detach().clone(), e.detach().clone()
        assert step(poison=False) == 0.0
        assert not torch.equal(w, w0) and not torch.equal(e, e0) and scaler.scale_t.item() == 2.0 ** 16
        w1, e1 = w.detach().clone(), e.detach().clone()
        buf, count = muon.state[w]["momentum_buffer"].clone(), adamw.state[e]["step"].item()
        assert step(poison=True) == 1.0
        assert torch.equal(w, w1) and torch.equal(e, e1) and torch.equal(muon.state[w]["momentum_buffer"], buf)
        assert adamw.state[e]["step"].item() == count and scaler.scale_t.item() == 2.0 ** 15


DEMO_PADDED_VOCAB = 100288  # the demo track's cl100k vocabulary (100277) padded to a multiple of 64


class ShardedEmbeddingCases(DdpRecordCases):
    """DdpRecordCases for the records whose ranks share the embedding's rows (dense_muon_t4_ddp_v5
    and v6): each rank forms the gradient of, and steps, its share of the rows, and DDP's gradients
    are views into its buckets; neither may change a number. the record's `smoke_unsharded` scale
    turns both off."""

    EXTRA_JOBS = {"unsharded_four": ("smoke_unsharded", 4)}  # v4's whole embedding per rank, bucket copies

    def unscale(self, scaler, w, e):
        return scaler.unscale([w], extra=[e.grad])  # as v4: the gathered rows are a tensor of their own

    @pytest.mark.slow
    @pytest.mark.parametrize("name, rows", [("one", DEMO_PADDED_VOCAB), ("two", DEMO_PADDED_VOCAB // 2),
                                            ("four", DEMO_PADDED_VOCAB // 4), ("unsharded_four", DEMO_PADDED_VOCAB)])
    def test_each_rank_owns_its_share_of_the_embedding(self, runs, name, rows):
        assert f"embedding: {rows} of {DEMO_PADDED_VOCAB} rows per rank" in runs[name]["log"]

    @pytest.mark.slow
    def test_sharding_the_embedding_changes_no_number(self, runs):
        """4 ranks with the embedding's rows and AdamW shared, against 4 ranks that each step the
        whole embedding (and copy gradients into DDP's buckets): the same losses and parameters."""
        sharded, whole = runs["four"], runs["unsharded_four"]
        assert whole["status"] == "completed", (whole["reason"], whole["log"][-2000:])
        a, b = step_losses(sharded), step_losses(whole)
        assert sorted(a) == sorted(b) == [2, 4]
        assert max(abs(a[s] - b[s]) for s in a) < 1e-6, (a, b)
        assert abs(sharded["val_loss"] - whole["val_loss"]) < 1e-6
        checksum = [next(line for line in r["log"].splitlines() if line.startswith("replicas:")).split(",")[1]
                    for r in (sharded, whole)]
        assert checksum[0] == checksum[1], checksum  # the parameters' checksum, to 13 digits
