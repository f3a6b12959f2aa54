"""The parts of ``fix --engine ray`` that need no cluster: the resumable record under OUTDIR,
which files must be done one after another, the stages run in this process on real files,
and that Ray stays out of the daemon and the local ``fix`` (a missing Ray is one clear line).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import MarkerClassifier, make_photo

from rotwatchd.cli.main import main
from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.fix.oneshot import fix
from rotwatchd.fix.ray_engine import colliding
from rotwatchd.fix.ray_stages import ClassifyBatch, look_batch, write_batch
from rotwatchd.fix.record import (
    FileRecord,
    FixRecord,
    FixRunning,
    RunLock,
    format_status,
    run_in_progress,
    status_document,
)


def _row(source: Path, outcome: str = "written") -> FileRecord:
    st = source.stat()
    return FileRecord(str(source), source.name, st.st_size, st.st_mtime_ns, "ab" * 32, outcome,
                      f"{outcome} -> x")


def test_the_record_leaves_out_what_is_settled_and_unchanged(tmp_path: Path) -> None:
    files = [make_photo(tmp_path / "in" / f"p{i}.jpg", seed=i) for i in range(4)]
    pairs = [(p, Path(p.name)) for p in files]
    out = tmp_path / "out"
    out.mkdir()
    with FixRecord(out) as record:
        record.begin_run("ray", 4, 4)
        record.add([_row(files[0]), _row(files[1], "failed"), _row(files[2], "review")])
        os.utime(files[2], ns=(1, 1))  # changed since it was recorded
        assert record.left_to_do(pairs) == [pairs[1], pairs[2], pairs[3]]
        assert record.counts() == {"written": 1, "unchanged": 0, "review": 1, "failed": 1,
                                   "skipped": 0}
    document = status_document(out)
    assert document["running"] is False and document["done_in_last_run"] == 3
    text = format_status(document)
    assert "interrupted: 3 of the 4 files left at its start done" in text
    assert f"failed: {files[1]}: failed -> x" in text


def test_one_run_at_a_time_per_output_folder(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert run_in_progress(tmp_path)
        with pytest.raises(FixRunning, match="another rotwatchd fix is writing to"):
            RunLock(tmp_path).__enter__()
    assert not run_in_progress(tmp_path)


def test_status_of_a_folder_without_a_record_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fix", "--status", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"rotwatchd: fix: no fix record in {tmp_path} (only --engine ray keeps one)"]


def test_names_two_files_could_both_take_are_done_one_by_one() -> None:
    files = [(Path("/a/x.jpg"), Path("x.jpg")), (Path("/b/x.jpg"), Path("x.jpg")),
             (Path("/a/review/y.jpg"), Path("review/y.jpg")), (Path("/a/y.jpg"), Path("y.jpg")),
             (Path("/a/z.jpg"), Path("z.jpg"))]
    assert colliding(files) == {Path("/a/x.jpg"), Path("/b/x.jpg"), Path("/a/review/y.jpg"),
                                Path("/a/y.jpg")}


class _Lease:
    """A ModelSource handing out one MarkerClassifier (the local fix's seam)."""

    def __init__(self, classifier: MarkerClassifier) -> None:
        self.classifier = classifier

    @contextlib.contextmanager
    def lease(self) -> Iterator[MarkerClassifier]:
        yield self.classifier


def test_the_stages_in_this_process_make_the_local_fix_outputs(tmp_path: Path) -> None:
    """look -> classify -> write on real files, the model's answer carried between them as
    between Ray workers: the outputs are the local fix's, byte for byte."""
    src = tmp_path / "src"
    tagged = make_photo(src / "tagged.jpg", exif_orientation=6, seed=1)
    plain = make_photo(src / "plain.jpg", correction=90, seed=2)
    (src / "notes.txt").write_text("not a picture")
    batch = {"source": np.array([str(tagged), str(plain), str(src / "notes.txt")], object),
             "relative": np.array(["tagged.jpg", "plain.jpg", "notes.txt"], object)}
    looked = look_batch(batch, limits=LimitsConfig())
    assert [len(p) > 0 for p in looked["pixels"]] == [False, True, False]  # only plain needs it
    marker = MarkerClassifier()
    classify = ClassifyBatch.__new__(ClassifyBatch)  # the actor, with the test's classifier
    classify.classifier = marker
    classified = classify(looked)
    assert marker.calls == 1 and "pixels" not in classified
    out = tmp_path / "out"
    written = write_batch(classified, outdir=str(out), min_confidence=0.5,
                          limits=LimitsConfig(), output=OutputConfig())
    assert list(written["outcome"]) == ["written", "written", "skipped"]
    assert list(written["correction"]) == [90, 90, -1]
    assert list(written["decided_by"]) == ["exif", "model", ""]

    local = tmp_path / "local"
    fix([src], local, _Lease(MarkerClassifier()), model_cfg=ModelConfig(min_confidence=0.5),
        limits=LimitsConfig(), output=OutputConfig(), ignore_patterns=())
    for name in ("tagged.jpg", "plain.jpg"):
        assert (out / name).read_bytes() == (local / name).read_bytes()


def test_neither_the_daemon_nor_the_local_fix_imports_ray(tmp_path: Path) -> None:
    make_photo(tmp_path / "src" / "t.jpg", exif_orientation=3)
    code = ("import sys\n"
            "from rotwatchd.cli.main import main\n"
            "import rotwatchd.service.daemon, rotwatchd.fix.oneshot\n"
            f"status = main(['fix', {str(tmp_path / 'src')!r}, '-o', {str(tmp_path / 'out')!r}])\n"
            "assert status == 0, status\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "t.jpg").is_file()


def test_without_ray_the_ray_engine_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    make_photo(tmp_path / "src" / "t.jpg", exif_orientation=3)
    assert main(["fix", str(tmp_path / "src"), "-o", str(tmp_path / "out"),
                 "--engine", "ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rotwatchd: fix: --engine ray needs Ray")
    assert err[0].endswith("install rotwatchd[ray]")
    assert not (tmp_path / "out").exists()
