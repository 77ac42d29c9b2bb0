"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_results(tmp_path_factory):
    """make(**kw): a results/ folder written by tests.synthetic.write_synthetic_results(**kw), once per distinct
    set of arguments in a session (the planted effects are known: tests/synthetic.py)."""
    from tests.synthetic import write_synthetic_results

    made = {}

    def make(**kw):
        key = tuple(sorted(kw.items()))
        if key not in made:
            d = tmp_path_factory.mktemp("results")
            write_synthetic_results(d, **kw)
            made[key] = d
        return made[key]
    return make
