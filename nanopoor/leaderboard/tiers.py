"""the tier each submission row reached, in a plain word: self-reported, reproduced by <signer>, official.

a run folder is self-reported: made on the submitter's machine, it proves nothing against its
maker. a row is reproduced when one of its runs has a re-run (result key `reproduces`) that
counts (nanopoor.reproduction.standing: it verifies, is signed by a key in
reproducers/allowed_signers, completed within the track's reproduce_within_nats of the original's
val loss, under the current harness, isolated); the row names the signers. it is official when
such a reproduction was made, like the run it re-ran, on the track's official hardware. re-runs
are evidence about a run, not runs of the submission: the board leaves them out of the
submissions (own_runs) and shows them here only."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from nanopoor.reproduction import Standing, standing

SELF_REPORTED, REPRODUCED, OFFICIAL = "self-reported", "reproduced", "official"
TIER_LINE = ("tier: self-reported (made on the submitter's machine: it proves nothing against its maker), reproduced by "
             "<signer> (re-run by `nanopoor reproduce` and signed by a key in reproducers/allowed_signers, within the "
             "track's tolerance of the original's val loss, same record, seed and ranks, under the current harness, "
             "isolated), or official (reproduced on the official hardware). docs/trust.md says what each proves.")


def own_runs(entries: list) -> list:
    """the runs that are not re-runs of another run (these make the submissions)."""
    return [e for e in entries if not e.result.get("reproduces")]


def reproductions(entries: list, tracks: Mapping) -> dict[str, list[tuple[object, Standing]]]:
    """run_id of a run -> each re-run of it (a RunEntry) with its standing."""
    by_id = {str(e.result.get("run_id")): e for e in entries}
    out = defaultdict(list)
    for e in entries:
        original_id = e.result.get("reproduces")
        if not original_id:
            continue
        original = by_id.get(str(original_id))
        track = tracks.get(str(e.result.get("track")))
        out[str(original_id)].append((e, standing(dict(e.result), dict(original.result) if original else None,
                                                  e.problems, e.signer, track)))
    return out


def tier_cells(entries: list, reruns: Mapping, link) -> dict:
    """a submission's tier, its signers (or "no"), the links of the re-runs that count, and why the
    others do not."""
    mine = [(e, s) for run in entries for e, s in reruns.get(str(run.result.get("run_id")), [])]
    counted = [(e, s) for e, s in mine if s.counts]
    signers = sorted({s.signer for _, s in counted if s.signer})
    if any(s.official for _, s in counted):
        tier = OFFICIAL
    elif counted:
        tier = f"{REPRODUCED} by {', '.join(signers)}"
    else:
        tier = SELF_REPORTED
    notes = [f"{link(e.path)}: {', '.join(s.reasons)}" for e, s in mine if not s.counts]
    return {"tier": tier, "reproduced": ", ".join(signers) if signers else "no",
            "reproduced_by": " ".join(sorted(link(e.path) for e, _ in counted)), "reproduction_notes": "; ".join(notes)}


def tier_cell(row: Mapping) -> str:
    """the tier as the markdown shows it: the word, then the counted re-runs' links, or why none counts."""
    tier = row.get("tier") or SELF_REPORTED
    by = str(row.get("reproduced_by") or "").split()
    if by:
        who = f", reproduced by {row.get('reproduced')}" if tier == OFFICIAL else ""   # official names its signers too
        return f"{tier}{who} (" + " ".join(f"[{r.rstrip('/').rsplit('/', 1)[-1]}]({r})" for r in by) + ")"
    notes = str(row.get("reproduction_notes") or "")
    return f"{tier} (re-runs that do not count: {notes})" if notes else tier
