"""the supervisor: everything that decides a run's numbers, outside the record's process.

it serves the data, keeps the clock, writes the event log and the log's claim lines, isolates the
record's process, and computes the claim from the weights the record hands over. the record's
side is the small client in `harness/`, which never imports this package; this package never
imports nanopoor."""

__version__ = "0.4.0"  # the harness's version (client and supervisor together), written into every run
CONTRACT_VERSION = 3   # the record contract the client speaks (docs/contract.md)
