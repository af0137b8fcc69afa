"""leaderboard.md (+ .json, .csv, .png) as a pure function of runs/ and the records' claims.

board: runs grouped into submissions, judged, ranked and ordered (one pandas frame);
claims: the records' published claims and what the harness found about them;
render: the frame as markdown, json, csv and a record-progression png."""
from nanopoor.leaderboard.board import COLUMNS, Board, RunEntry, build, generate, output_paths, stale_files
from nanopoor.leaderboard.render import rows_of

__all__ = ["COLUMNS", "Board", "RunEntry", "build", "generate", "output_paths", "rows_of", "stale_files"]
