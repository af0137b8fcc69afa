"""tracks are data (tracks.toml beside this file), read into small frozen dataclasses."""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

TRACKS_FILE = Path(__file__).with_name("tracks.toml")


class UnknownTrack(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want one plain line
        return str(self.args[0])


@dataclass(frozen=True)
class Track:
    name: str
    description: str
    dataset: str
    tokenizer: str
    vocab_size: int
    target_val_loss: float
    val_tokens: int
    official_gpu: str
    official_gpu_count: int
    official_capability: str
    plausible_min_tokens: int

    @property
    def has_official_hardware(self) -> bool:
        return bool(self.official_gpu)

    def to_dict(self) -> dict:
        return asdict(self)


def load_tracks(path: Path = TRACKS_FILE) -> dict[str, Track]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    return {name: Track(name=name, **fields) for name, fields in raw.items()}


def get_track(name: str) -> Track:
    tracks = load_tracks()
    if name not in tracks:
        close = difflib.get_close_matches(name, tracks, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownTrack(f"unknown track '{name}': {hint}known tracks: {', '.join(sorted(tracks))}")
    return tracks[name]
