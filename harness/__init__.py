"""the harness client: what a record imports (`import harness; h = harness.session()`).

it runs inside the record's own (isolated) process and holds no authority: it asks the
supervisor for batches, reports steps, and hands over the final weights. the clock, the token
count, the event log and the claim's val loss are the supervisor's (`supervisor/`, which this
package never imports). docs/contract.md is the api."""
CONTRACT_VERSION = 3  # 3: the supervisor keeps the clock and computes the claim from the handed-over weights
# 2: h.evaluate reads the progress slice; val only in h.finish; h.args read-only


def session():
    """the running session (made by harness.boot before the record's code runs)."""
    from harness.session_api import current

    return current()
