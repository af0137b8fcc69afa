"""the harness: what a record imports to get its data, its clock and its evaluation.

it owns everything that decides whether two results are comparable. it never imports nanopoor."""
CONTRACT_VERSION = 1
__version__ = "0.2.0"  # 0.2: data process prefetches, int32 batches into pinned buffers; fused eval loss

from harness.session import Session, session  # noqa: E402,F401
