"""the one exception the client raises when a record breaks the contract.

it ends the record's run `invalid` with its kind and detail. the client also tells the supervisor
at once, so a record that swallows the exception is still reported; a record that silences the
client gains nothing by it, since nothing it says becomes a number on the board."""
from __future__ import annotations


class ContractViolation(RuntimeError):
    """the record broke the contract: the run ends `invalid` with this kind and detail."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        from harness.session_api import report_violation  # late: raised while the session is being built too

        report_violation(kind, detail)
