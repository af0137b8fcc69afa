"""tracks are data (tracks.toml beside this file), read into small frozen dataclasses.

a track is versioned: a change to what a run is judged against (its target) is a new version,
and the targets of earlier versions stay in the track's `previous` tables. a run keeps the
version and the target it was judged against in its result, so a new target never re-judges
an old run. a track whose current version has no target yet is calibrating: its runs are
recorded with target None and never ranked."""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

TRACKS_FILE = Path(__file__).with_name("tracks.toml")


class UnknownTrack(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want one plain line
        return str(self.args[0])


@dataclass(frozen=True, kw_only=True)
class Track:
    name: str
    description: str
    dataset: str
    tokenizer: str
    vocab_size: int
    val_tokens: int
    official_gpu: str
    official_gpu_count: int
    official_capability: str
    plausible_min_tokens: int
    version: int = 1
    target_val_loss: float | None = None     # None: this version is still being calibrated
    target_source: str = ""                  # what set the target (runs, recipe), for readers
    reproduce_within_nats: float = 0.02      # a re-run of a run (same record, seed, data) lands this close to it
    previous: tuple = field(default=())      # earlier versions: dicts with version and target_val_loss

    @property
    def has_official_hardware(self) -> bool:
        return bool(self.official_gpu)

    @property
    def calibrating(self) -> bool:
        return self.target_val_loss is None

    def target_for(self, version: int) -> tuple[bool, float | None]:
        """(known, target) of one version of this track: known is False for a version it never had."""
        if version == self.version:
            return True, self.target_val_loss
        for old in self.previous:
            if old.get("version") == version:
                return True, old.get("target_val_loss")
        return False, None

    def to_dict(self) -> dict:
        return asdict(self)


def load_tracks(path: Path = TRACKS_FILE) -> dict[str, Track]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    return {name: Track(name=name, **{**fields, "previous": tuple(fields.get("previous", ()))})
            for name, fields in raw.items()}


def get_track(name: str) -> Track:
    tracks = load_tracks()
    if name not in tracks:
        close = difflib.get_close_matches(name, tracks, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownTrack(f"unknown track '{name}': {hint}known tracks: {', '.join(sorted(tracks))}")
    return tracks[name]
