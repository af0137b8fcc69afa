"""reproduce: compare one harness run of a record with a claim published for it.

the claim says time, tokens and hardware, and its log (when the peer logs are present) says the
loss curve. the run folder says what the harness measured: its own clock, its token count, the
loss on the track's canonical val set, causality. compare_to_claim() is a pure function of both."""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nanopoor.errors import UserError
from nanopoor.jsonio import clean
from nanopoor.logs.model import ParsedLog, ParsedRun

# what the comparison shows of the harness's run (keys of nanopoor.result.RunResult)
RUN_KEYS = ("run_id", "status", "reason", "scale", "seed", "hardware_label", "class", "train_time_ms", "tokens",
            "formula", "steps", "val_loss", "val_loss_full", "causal", "heldout_gap", "track")
TIME_TOLERANCE = 0.10       # a reproduced time may be this much slower than the claim on the same hardware
STEP_LOSS_TOLERANCE = 0.10  # nats: more than eval noise between the claim's log and the harness at one step


@dataclass
class Comparison:
    record: str
    claim: dict                      # the [[claims]] table as written
    run_dir: str
    run: dict                        # what the harness measured (from result.json)
    time: dict                       # claim_ms, run_ms, ratio, hardware on both sides, comparable
    tokens: dict                     # claim, run, formulas
    target: float = 3.28             # the track's target val loss
    steps: list[dict] = field(default_factory=list)   # val loss at steps both sides evaluated
    claim_log: dict | None = None    # what the claim's own log says (path, format, final, target step)
    verdict: str = "not reproduced"  # reproduced | not reproduced | inconclusive
    reasons: list[str] = field(default_factory=list)
    plot: str | None = None

    def to_dict(self) -> dict:
        return clean(asdict(self))


def peer_logs_dir() -> Path | None:
    """../shared/peer-logs beside the repository (or NANOPOOR_PEER_LOGS), when it is there."""
    candidates = [os.environ.get("NANOPOOR_PEER_LOGS"),
                  Path.cwd().parent / "shared" / "peer-logs",
                  Path(__file__).resolve().parents[2] / "shared" / "peer-logs"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def claim_log_path(claim: dict, peer_dir: Path | None = None) -> Path | None:
    rel = claim.get("peer_log")
    peer_dir = peer_dir if peer_dir is not None else peer_logs_dir()
    if not rel or peer_dir is None:
        return None
    path = peer_dir / rel
    return path if path.is_file() else None


def pick_claim(claims: list[dict], number: int | None, record: str) -> dict:
    if not claims:
        raise UserError(f"record {record} has no [[claims]]: nothing to reproduce; "
                        f"`nanopoor run` runs it without a claim to compare with")
    if number is None:
        return claims[0]
    if not 1 <= number <= len(claims):
        raise UserError(f"record {record} has {len(claims)} claim(s); pass --claim 1..{len(claims)}")
    return claims[number - 1]


def claim_time_ms(claim: dict) -> float | None:
    for key, scale in (("time_ms", 1.0), ("time_s", 1000.0), ("time_min", 60_000.0)):
        if isinstance(claim.get(key), (int, float)):
            return float(claim[key]) * scale
    return None


def same_hardware(a: str | None, b: str | None) -> bool:
    def norm(s: str) -> str:
        s = re.sub(r"\bnvidia\b", "", s.lower())
        return re.sub(r"[\s×x*]+", " ", s).strip()
    return bool(a and b) and norm(a) == norm(b)


def compare_to_claim(run_dir: Path, claim: dict, claim_log_parsed: ParsedLog | None, *,
                     record: str = "", target: float | None = None) -> Comparison:
    """what the harness measured in run_dir against what the claim (and its log) say."""
    from nanopoor.logs.nanopoor_events import parse as parse_events
    from nanopoor.result import load_result, select

    run_dir = Path(run_dir)
    result = load_result(run_dir)
    target = float(result.get("target_val_loss") or 3.28) if target is None else float(target)
    events_path = run_dir / "events.jsonl"
    run_log = parse_events(events_path.read_text(), events_path) if events_path.is_file() else None
    run_curve = run_log.runs[0] if run_log and run_log.runs else None

    run = select(result, RUN_KEYS)
    claim_ms = claim_time_ms(claim)
    comparable = same_hardware(claim.get("hardware"), result.get("hardware_label"))
    run_ms = result.get("train_time_ms")
    time = {"claim_ms": claim_ms, "run_ms": run_ms, "ratio": (run_ms / claim_ms) if run_ms and claim_ms else None,
            "claim_hardware": claim.get("hardware"), "run_hardware": result.get("hardware_label"),
            "comparable": comparable}
    tokens = {"claim": claim.get("tokens"), "run": result.get("tokens"),
              "claim_formula": claim.get("formula"), "run_formula": result.get("formula")}

    cmp = Comparison(record=record or str(result.get("record", "")), claim=dict(claim), run_dir=str(run_dir),
                     run=run, time=time, tokens=tokens, target=target)
    claim_run = _claim_run(claim_log_parsed)
    if claim_log_parsed is not None and claim_run is not None:
        hit = claim_run.first_at_or_below(target)
        cmp.claim_log = {"path": str(claim_log_parsed.path), "format": claim_log_parsed.format,
                         "run": claim_run.name, "final_val_loss": claim_run.final_val_loss,
                         "final_step": claim_run.last.step if claim_run.last else None,
                         "target_step": hit.step if hit else None, "target_time_ms": hit.time_ms if hit else None}
        if run_curve is not None:
            cmp.steps = matching_steps(claim_run, run_curve)
    cmp.verdict, cmp.reasons = _verdict(cmp, target)
    return cmp


def _claim_run(parsed: ParsedLog | None) -> ParsedRun | None:
    """the run a claim's log stands for: the only one, else the last that has val losses."""
    if parsed is None or not parsed.runs:
        return None
    with_val = [r for r in parsed.runs if r.val_points]
    return with_val[-1] if with_val else parsed.runs[-1]


def matching_steps(claim_run: ParsedRun, run_curve: ParsedRun) -> list[dict]:
    """val loss at every step that both the claim's log and the harness run evaluated."""
    ours = {p.step: p.val_loss for p in run_curve.val_points}
    rows = []
    for p in claim_run.val_points:
        if p.step in ours:
            rows.append({"step": p.step, "claim_val_loss": p.val_loss, "run_val_loss": ours[p.step],
                         "diff": ours[p.step] - p.val_loss})
    return rows


def _verdict(cmp: Comparison, target: float) -> tuple[str, list[str]]:
    """reproduced only when every check that can be made passes and none was left unmade."""
    failed, open_ = [], []
    run = cmp.run
    if run.get("status") != "completed":
        failed.append(f"the run ended {run.get('status')}" + (f": {run['reason']}" if run.get("reason") else ""))
    if run.get("causal") is False:
        failed.append("the model failed the harness's causality check: it sees future tokens")
    if run.get("scale") != "full":
        open_.append(f"scale '{run.get('scale')}' checks the code path only; `--scale full` reproduces the claim")
    val = run.get("val_loss")
    if val is None or not math.isfinite(val):
        failed.append("the harness measured no final val loss")
    elif val > target:
        failed.append(f"final val loss {val:.4f} on the canonical val set is above the target {target}")
    if cmp.steps:
        last = cmp.steps[-1]
        if last["diff"] > STEP_LOSS_TOLERANCE:
            failed.append(f"at step {last['step']} the claim's log says {last['claim_val_loss']:.4f}, "
                          f"the harness measures {last['run_val_loss']:.4f}")
    ct, rt = cmp.tokens.get("claim"), cmp.tokens.get("run")
    if ct and rt and rt > ct:
        failed.append(f"the run used {rt:,} tokens, more than the claimed {ct:,}")
    t = cmp.time
    if t["run_ms"] is None:
        failed.append("the run recorded no train time")
    elif t["claim_ms"] is None:
        open_.append("the claim states no time")
    elif not t["comparable"]:
        open_.append(f"hardware differs (claim: {t['claim_hardware'] or '?'}, run: {t['run_hardware'] or '?'}): "
                     f"times are not comparable")
    elif t["run_ms"] is not None and t["run_ms"] > t["claim_ms"] * (1 + TIME_TOLERANCE):
        failed.append(f"train time {t['run_ms'] / 60000:.2f} min is over the claimed {t['claim_ms'] / 60000:.2f} min "
                      f"on the same hardware")
    if failed:
        return "not reproduced", failed + open_
    if open_:
        return "inconclusive", open_
    return "reproduced", [f"val {val:.4f} <= {target}, {rt or 0:,} tokens, {t['run_ms'] / 60000:.2f} min on "
                          f"{t['run_hardware']} (claimed {t['claim_ms'] / 60000:.2f} min)"]


def rerun_verdict(original: dict, new: dict, within: float) -> tuple[bool, str]:
    """(reproduced, why): a re-run reproduces its original when it completed and its val loss
    lands within the track's tolerance (`reproduce_within_nats`) of the original's."""
    a, b = original.get("val_loss"), new.get("val_loss")
    if new.get("status") != "completed":
        return False, f"the re-run ended {new.get('status')}" + (f": {new['reason']}" if new.get("reason") else "")
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not (math.isfinite(a) and math.isfinite(b)):
        return False, f"no val loss to compare (original {a}, re-run {b})"
    gap = b - a
    if abs(gap) > within:
        return False, f"val loss {b:.4f} is {gap:+.4f} from the original's {a:.4f}, more than the track's {within} nats"
    return True, f"val loss {b:.4f} is {gap:+.4f} from the original's {a:.4f}, within the track's {within} nats"


def reproduce_run(run_dir: Path, *, data=None, out: Path | None = None, timeout_s=None, quiet: bool = False,
                  as_t4: bool = False, allow_cpu: bool = False, on_note=None, isolated: bool = True,
                  sign: Path | None = None) -> dict:
    """re-run a committed run's record with its scale, seed, track and ranks, and record the new
    run as a reproduction of it (result `reproduces`). a run folder proves nothing against the
    machine that made it, and neither does a second folder: the re-run counts once a trusted
    person signs it (`sign`: their private key, else `nanopoor sign` later; nanopoor.sign). the
    preflight of `run` comes first: a full-scale run on a machine without a gpu is refused before
    it starts."""
    from nanopoor import runner
    from nanopoor.output import check_writable, default_runs_dir
    from nanopoor.result import load_result
    from supervisor.tracks import get_track

    if sign is not None and not Path(sign).is_file():   # said before a run of minutes, not after it
        raise UserError(f"no private key at {sign}: pass --sign with the private half of an ed25519 key, or leave it "
                        f"out and sign later with `nanopoor sign RUN --key KEY` (docs/reproducers.md)")
    original = load_result(Path(run_dir) / "result.json")
    within = get_track(str(original["track"])).reproduce_within_nats
    record = Path("records") / str(original["record"])
    scale, track = str(original["scale"]), original["track"]
    for note in runner.preflight(record, scale, track=track, data_dir=data, allow_cpu=allow_cpu, verb="reproduce",
                                 isolated=isolated):
        if on_note is not None:
            on_note(note)
    out = out or default_runs_dir(scale, runner.has_gpu())
    check_writable(out, "--runs DIR")
    new_dir = runner.run_record(record, scale=scale, seed=original["seed"], data_dir=data, out_root=out,
                                timeout_s=timeout_s, track=track, nproc=int(original.get("nproc") or 1),
                                quiet=quiet, reproduces=original["run_id"], as_t4=as_t4 or bool(original.get("t4_limits")),
                                isolated=isolated)
    new = load_result(new_dir / "result.json")
    a, b = original.get("val_loss"), new.get("val_loss")
    gap = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
    ok, why = rerun_verdict(original, new, within)
    # the machine id is not compared: two rented machines of one kind cannot be told apart by it
    summary = f"{new['run_id']}: {'reproduced' if ok else 'not reproduced'}: {why}"
    report = {"original": original["run_id"], "reproduction": new["run_id"], "status": new["status"], "val_loss": b,
              "original_val_loss": a, "gap": gap, "reproduced": ok, "why": why, "within": ok, "within_nats": within,
              "summary": summary, "run_dir": str(new_dir), "signed": None}
    if sign is not None and ok:
        from nanopoor.sign import sign_run

        report["signed"] = sign_run(new_dir, sign, runs_dir=Path(run_dir).parent)
    elif ok:
        report["summary"] += f"; unsigned: it counts once signed (`nanopoor sign {Path(new_dir).as_posix()} --key KEY`)"
    return report


def reproduce_claim(record: str | Path, *, claim: int | None = None, data=None, scale: str = "full",
                    seed: int | None = None, runs_dir: Path | None = None, timeout_s: float | None = None,
                    plot: Path | None = None, allow_cpu: bool = False, as_t4: bool = False, quiet: bool = False,
                    on_note=None, isolated: bool = True) -> Comparison:
    """run a record as its published claim describes and compare the run with the claim (and its
    log's curve, when the peer logs are here). preflight notes go to on_note(text) before the run
    starts; the claim-vs-harness overlay png is written only where plot (a file or a folder) says."""
    from nanopoor import runner
    from nanopoor.logs import parse_log
    from nanopoor.logs.nanopoor_events import parse as parse_events
    from nanopoor.output import check_writable, default_runs_dir
    from nanopoor.records import load_record

    rec = load_record(record)
    chosen = pick_claim(rec.claims, claim, rec.name)
    for note in runner.preflight(rec.path, scale, data_dir=data, allow_cpu=allow_cpu, verb="reproduce", isolated=isolated):
        if on_note is not None:
            on_note(note)
    runs_dir = runs_dir or default_runs_dir(scale, runner.has_gpu())
    check_writable(runs_dir, "--runs DIR")
    log_path = claim_log_path(chosen)
    claim_log = parse_log(log_path) if log_path else None
    run_dir = runner.run_record(rec.path, scale=scale, seed=seed, data_dir=data, out_root=runs_dir,
                                timeout_s=timeout_s, track=None, quiet=quiet, as_t4=as_t4, isolated=isolated)
    cmp = compare_to_claim(run_dir, chosen, claim_log, record=rec.name)
    curves = [(f"claim ({log_path.name})", r) for r in (claim_log.runs[-1:] if claim_log else [])]
    events = Path(run_dir) / "events.jsonl"
    if events.is_file():
        curves += [(f"harness ({cmp.run.get('scale')})", r) for r in parse_events(events.read_text(), events).runs]
    if curves and plot is not None:
        from nanopoor.loss_plot import write_loss_plot

        png = plot / f"reproduce-{rec.name}.png" if plot.is_dir() else plot
        cmp.plot = str(write_loss_plot(curves, png, title=f"{rec.name}: claim vs harness", target=cmp.target))
    return cmp
