"""bench/bench_adapt.py refuses a user it does not know, or one whose bare clone is not there,
with one usage line before it loads anything (it printed a KeyError or a git traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT


@pytest.mark.parametrize(("args", "said"), [
    (["--users", "kneez"], "error: --users: no user kneez (known: clothing, signs, xrays, "
                           "knees, documents, screenshots, stamps)"),
    (["--users", "signs,knees"], "error: user signs needs --signs DIR, its bare clone "
                                 "(not given)"),
    (["--users", "knees", "--knees", "{missing}"], "error: user knees needs --knees DIR, its "
                                                   "bare clone (no folder {missing})"),
])
def test_an_unknown_user_or_a_missing_clone_is_one_usage_error(
        tmp_path: Path, args: list[str], said: str) -> None:
    missing = str(tmp_path / "no-clone")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_adapt.py"),
         *[a.format(missing=missing) for a in args]],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.splitlines()[-1] == "bench_adapt.py: " + said.format(missing=missing)
