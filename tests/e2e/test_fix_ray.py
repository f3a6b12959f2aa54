"""``rotwatchd fix --engine ray`` on a real Ray cluster of two nodes on this machine (a head and
a worker, started with ``ray start`` on free ports, one CPU each), with the real model.

It must make exactly what the local ``fix`` makes (same names, same bytes), record every
file's outcome under OUTDIR, and, killed midway and started again, finish the same with no
file written twice (no ``name.1.jpg``). Skipped without Ray: CI runs it through
scripts/test-ray.sh in a virtualenv with the ``[ray]`` extra.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_photo, wait_until

pytest.importorskip("ray", reason="Ray is not installed (the rotwatchd[ray] extra; "
                                  "CI runs these tests with scripts/test-ray.sh)")

from helpers.ray_cluster import LocalRayCluster  # noqa: E402

from rotwatchd.fix.record import RECORD_NAME  # noqa: E402

pytestmark = pytest.mark.timeout(600)

FIX_TIMEOUT = 300


def _command() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    """Head + one worker node; every process it started is ended afterwards, pass or fail."""
    with LocalRayCluster(workers=1, num_cpus=1) as running:
        yield running
    assert running.processes() == []


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two input folders, 40 files: photos turned 4 ways in subfolders, some EXIF-tagged,
    a PNG, a broken JPEG, a note (not an image), and one name in both folders (its second
    copy gets a number, as with the local fix)."""
    root = tmp_path_factory.mktemp("inputs")
    src, more = root / "src", root / "more"
    for i in range(34):
        tag = (6, 3, 8)[i % 3] if i % 7 == 0 else None
        make_photo(src / f"d{i % 3}" / f"p{i:02d}.jpg", correction=0 if tag else (i * 90) % 360,
                   exif_orientation=tag, size=(320, 240), seed=i)
    make_photo(src / "d1" / "scan.png", correction=90, size=(200, 160), seed=99, fmt="PNG")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF truncated")
    (src / "notes.txt").write_text("not a picture\n")
    make_photo(more / "d0" / "p00.jpg", exif_orientation=3, size=(320, 240), seed=1000)
    make_photo(more / "q1.jpg", exif_orientation=8, size=(240, 320), seed=1001)
    make_photo(more / "q2.jpg", correction=270, size=(320, 240), seed=1002)
    return [src, more]


@pytest.fixture(scope="module")
def local_result(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The local fix's output tree: relative name -> SHA-256."""
    out = tmp_path_factory.mktemp("local") / "out"
    done = subprocess.run([*_command(), "fix", *map(str, inputs), "-o", str(out)],
                          capture_output=True, text=True, timeout=FIX_TIMEOUT)
    assert done.returncode == 1, done.stderr  # broken.jpg fails
    tree = _tree(out)
    assert "d0/p00.1.jpg" in tree and len(tree) == 38  # 40 files - broken - notes
    return tree


def _tree(outdir: Path) -> dict[str, str]:
    """Every file under ``outdir`` but the fix record: relative name -> SHA-256."""
    return {p.relative_to(outdir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(outdir.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _ray_fix(inputs: list[Path], out: Path, cluster: LocalRayCluster,
             *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_command(), "fix", *map(str, inputs), "-o", str(out), "--engine",
                           "ray", "--address", cluster.address, *more], capture_output=True,
                          text=True, timeout=FIX_TIMEOUT, env=cluster.environment())


def _recorded(out: Path) -> dict[str, tuple[str, str]]:
    """The record, read as another process would while a run goes on: source -> (outcome,
    sha256); empty before the driver created it."""
    if not (out / RECORD_NAME).exists():
        return {}
    db = sqlite3.connect(f"{(out / RECORD_NAME).as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT source, outcome, sha256 FROM files").fetchall()
    except sqlite3.OperationalError:  # no table yet
        return {}
    finally:
        db.close()
    return {source: (outcome, sha256) for source, outcome, sha256 in rows}


def _sources(inputs: list[Path]) -> dict[str, Path]:
    return {str(p): p for folder in inputs for p in folder.rglob("*") if p.is_file()}


def test_ray_fix_writes_what_the_local_fix_writes_and_records_it(
        cluster: LocalRayCluster, inputs: list[Path], local_result: dict[str, str],
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _ray_fix(inputs, out, cluster)
    assert done.returncode == 1, done.stderr  # broken.jpg failed, as with the local fix
    assert _tree(out) == local_result
    assert "broken.jpg: " in done.stderr and "total" in done.stderr
    recorded = _recorded(out)
    sources = _sources(inputs)
    assert set(recorded) == set(sources)
    for source, (outcome, sha256) in recorded.items():
        if outcome not in ("failed", "skipped"):
            assert sha256 == hashlib.sha256(sources[source].read_bytes()).hexdigest()
    assert recorded[str(inputs[0] / "notes.txt")][0] == "skipped"
    status = subprocess.run([*_command(), "fix", "--status", str(out)], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and "no fix running" in status.stdout
    assert "finished: 40 of the 40 files" in status.stdout

    # Again: only the failed file is tried again; nothing is written, nothing renumbered.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    again = _ray_fix(inputs, out, cluster)
    assert again.returncode == 1, again.stderr
    assert "39 of the 40 files settled by an earlier run" in again.stderr
    assert _tree(out) == local_result
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps


def test_a_killed_run_resumed_finishes_the_same_without_duplicates(
        cluster: LocalRayCluster, inputs: list[Path], local_result: dict[str, str],
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [*_command(), "fix", *map(str, inputs), "-o", str(out), "--engine", "ray",
               "--address", cluster.address]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=cluster.environment())
    try:
        # Midway: some outcomes recorded (the record is readable while it runs), not all.
        wait_until(lambda: len(_recorded(out)) >= 8 or driver.poll() is not None,
                   timeout=FIX_TIMEOUT)
        assert driver.poll() is None, "the run ended before it could be interrupted"
        status = subprocess.run([*_command(), "fix", "--status", str(out)],
                                capture_output=True, text=True, timeout=60)
        assert "a fix is running" in status.stdout, status.stdout
        driver.send_signal(signal.SIGKILL)
        driver.wait(60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(60)
        assert driver.stderr is not None
        driver.stderr.close()
    before = _recorded(out)
    assert 8 <= len(before) < 40, f"{len(before)} files recorded when killed"
    status = subprocess.run([*_command(), "fix", "--status", str(out)], capture_output=True,
                            text=True, timeout=60)
    assert "no fix running" in status.stdout and "interrupted" in status.stdout

    resumed = _ray_fix(inputs, out, cluster)
    assert resumed.returncode == 1, resumed.stderr
    settled = {s for s, (outcome, _) in before.items() if outcome != "failed"}
    assert f"{len(settled)} of the 40 files settled by an earlier run" in resumed.stderr
    assert _tree(out) == local_result  # same names (no name.1.jpg extra), same bytes
    assert not [p for p in out.rglob("*") if p.name.endswith(".rwtmp")]
    after = _recorded(out)
    assert set(after) == set(_sources(inputs))
    assert {s: after[s] for s in settled} == {s: before[s] for s in settled}  # not redone
