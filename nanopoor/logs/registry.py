"""which parser reads a log: auto-detection over a registry, or a name given with --parser.

each parser module has NAME, DESCRIPTION, detect(text) -> int (how many lines carry its
signature) and parse(text, path) -> ParsedLog. the format with the most signature lines wins,
so a nanopoor log.txt that happens to echo one foreign line is still read as a log.txt."""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from nanopoor.errors import UserError, did_you_mean
from nanopoor.logs import llmc, mlperf, modded_nanogpt, nanopoor_events, nanopoor_text, runlog
from nanopoor.logs.model import ParsedLog

# order breaks ties: the stricter signatures first
PARSERS: dict[str, ModuleType] = {m.NAME: m for m in (nanopoor_events, mlperf, modded_nanogpt, llmc, runlog, nanopoor_text)}


def parser_names() -> list[str]:
    return list(PARSERS)


def get_parser(name: str) -> ModuleType:
    if name not in PARSERS:
        raise UserError(f"unknown parser '{name}'{did_you_mean(name, PARSERS)}: "
                        f"known parsers are {', '.join(PARSERS)}")
    return PARSERS[name]


def resolve_log_path(path: Path | str) -> Path:
    """a file as given; a run folder means its events.jsonl."""
    path = Path(path)
    if path.is_dir():
        events_path = path / "events.jsonl"
        if not events_path.is_file():
            raise UserError(f"{path} is a folder without events.jsonl: give a log file or a run folder")
        return events_path
    if not path.exists():
        raise UserError(f"no log at {path}: check the path (a log file or a run folder)")
    return path


DETECT_HEAD_CHARS = 512 * 1024   # a format shows itself near the top (after any embedded source) ...
DETECT_TAIL_CHARS = 64 * 1024    # ... or at the end


def detect_format(text: str) -> str | None:
    # the training lines sit at the end: when the tail alone shows one format many times and no
    # other, that settles it without scanning an embedded source of a few hundred kB
    tail = text[-DETECT_TAIL_CHARS:]
    tail_scores = {name: mod.detect(tail) for name, mod in PARSERS.items()}
    ranked = sorted(tail_scores.values(), reverse=True)
    if ranked[0] >= 20 and ranked[1] == 0:
        return max(tail_scores, key=lambda n: tail_scores[n])
    if len(text) > DETECT_HEAD_CHARS + DETECT_TAIL_CHARS:
        text = text[:DETECT_HEAD_CHARS] + "\n" + tail
    scores = {name: mod.detect(text) for name, mod in PARSERS.items()}
    best = max(scores, key=lambda n: scores[n])   # first of the highest, in registry order
    return best if scores[best] > 0 else None


def parse_text(text: str, path: Path | str = "<text>", parser: str | None = None) -> ParsedLog:
    path = Path(path)
    if parser is None:
        parser = detect_format(text)
        if parser is None:
            raise UserError(f"cannot tell the log format of {path}: no line looks like any of "
                            f"{', '.join(PARSERS)}; pass --parser NAME if you know it")
    parsed = get_parser(parser).parse(text, path)
    if not parsed.runs:
        raise UserError(f"{path}: the {parser} parser found no training lines in it; "
                        f"check the file or try another --parser ({', '.join(PARSERS)})")
    return parsed


def parse_log(path: Path | str, parser: str | None = None) -> ParsedLog:
    """parse one log file (or run folder) into the common shape."""
    path = resolve_log_path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return parse_text(text, path, parser)
