"""the one exception the harness raises when a record breaks the contract.

it lives apart from the session so that every part of the session (warm-up, evaluation pause,
finish) and harness.launch can raise and catch it without importing one another."""
from __future__ import annotations

from harness import integrity


class ContractViolation(RuntimeError):
    """the record broke the contract: the run ends `invalid` with this kind and detail."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        integrity.add_violation(kind, detail)  # a record that swallows the exception is still invalid
