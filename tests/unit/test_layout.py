"""The package's shape as the README describes it: one row per package in its Layout table, and
every package placed in the import layers that ``lint-imports`` checks (pyproject.toml)."""

from __future__ import annotations

import re
import tomllib

from helpers.paths import REPO_ROOT

ROOT = REPO_ROOT


def _packages() -> set[str]:
    return {p.parent.name for p in (ROOT / "rotwatchd").glob("*/__init__.py")}


def test_readme_layout_table_names_every_package_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `rotwatchd/(\w+)/` \|", table, flags=re.MULTILINE))
    assert rows == _packages()


def test_every_package_has_a_layer_and_the_top_level_holds_only_the_entry_points() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    layered = {name.strip().removeprefix("rotwatchd.")
               for layer in contract["layers"] for name in layer.split("|")}
    assert _packages() | {"__main__"} == layered
    modules = {p.stem for p in (ROOT / "rotwatchd").glob("*.py")}
    assert modules == {"__init__", "__main__"}
