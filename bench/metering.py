"""Metering write throughput and usage-query time against event count: the place for it, waiting for issue 5.

Issue 9 also asks to benchmark the parts that scale with data rather than with requests:

- **write throughput**: usage events per second that metering's durable path (local spool + batched insert into
  PostgreSQL) sustains, measured through metering's own writer API with synthetic events, one worker;
- **usage-query time against event count**: the usage API's queries (a tenant's usage per day, grouped by model and
  key; the organisation-wide totals) timed at 1M and 10M synthetic events in the database, loaded in bulk (COPY)
  through metering's own table definition, with the indexes its migration creates.

It must be written against the metering code and schema as they land on main (issue 5), not against a guess: the
event model, the writer's API and the usage routes decide what is generated and what is timed. Until then this
module says so and exits with status 2; ``python -m bench.run`` prints the same note. Results belong in
bench/results/ beside the request benchmark's, and the figures in bench/README.md.
"""

from __future__ import annotations

import importlib.util
import sys

_CANDIDATE_MODULES = ("tenantgate.metering", "tenantgate.tenants.metering")


def metering_module() -> str | None:
    """The metering package of the build under test, if it has one."""
    for name in _CANDIDATE_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


def status() -> str:
    found = metering_module()
    if found is None:
        return "not available: metering (issue 5) is not in this build (bench/metering.py says what it will measure)"
    return f"not written yet: {found} exists now, so bench/metering.py can be written against it"


def main() -> int:
    print(f"Metering write/query benchmark: {status()}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
