"""`rotwatchd eval` and `rotwatchd bench`: pure metrics and the real commands on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.evaluation import accuracy as evaluate
from rotwatchd.evaluation import speed as benchmark
from rotwatchd.evaluation.accuracy import Case, accuracy, confusion, resave, risk_coverage, turned
from rotwatchd.model import default_model_dir, load_classifier

FIXTURES = FIXTURES_DIR / "orientation"


def test_metrics_on_known_cases() -> None:
    cases = [Case("a", 0, 0, 0.99), Case("a", 90, 90, 0.8), Case("b", 180, 0, 0.7),
             Case("b", 270, 270, 0.4)]
    assert accuracy(cases) == 0.75
    m = confusion(cases)
    assert m[0][0] == 1 and m[1][1] == 1 and m[2][0] == 1 and m[3][3] == 1
    assert sum(map(sum, m)) == 4
    rows = {r.threshold: r for r in risk_coverage(cases, (0.0, 0.75, 0.9, 1.0))}
    assert rows[0.0].coverage == 1.0 and rows[0.0].risk == 0.25
    assert rows[0.75].coverage == 0.5 and rows[0.75].risk == 0.0
    assert rows[0.75].decided_correct == 0.5
    assert rows[1.0].coverage == 0.0 and rows[1.0].risk == 0.0


def test_turned_needs_the_stated_clockwise_correction() -> None:
    """An image stored with correction c becomes upright again when turned c clockwise."""
    image = Image.new("RGB", (4, 2))
    image.putpixel((0, 0), (255, 0, 0))  # red mark at the upright top-left corner
    for correction in (0, 90, 180, 270):
        stored = turned(image, correction)
        back = stored.rotate(-correction, expand=True)  # PIL rotate is counter-clockwise
        assert back.size == image.size and back.getpixel((0, 0)) == (255, 0, 0)


def test_resave_round_trips_through_the_codec() -> None:
    image = Image.new("RGB", (32, 24), (10, 200, 30))
    assert resave(image, "png", 0).tobytes() == image.tobytes()
    jpeg = resave(image, "jpeg", 60)
    assert jpeg.format == "JPEG" and jpeg.size == image.size


def test_eval_command_on_a_real_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("kphotoalbum", "documents"):
        (tmp_path / sub).mkdir()
        for p in sorted((FIXTURES / sub).glob("*.jpg"))[:2]:
            shutil.copy(p, tmp_path / sub / p.name)
    assert evaluate.main([str(tmp_path), "--json", "--backend", "litert-scene"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cases"] == 16 and set(out["per_group"]) == {"kphotoalbum", "documents"}
    assert sum(map(sum, out["confusion"])) == 16
    assert evaluate.main([str(tmp_path), "--format", "png", "--backend", "litert-scene"]) == 0
    text = capsys.readouterr().out
    assert "confusion" in text and "wrong among decided" in text and "<- shipped default" in text
    assert "kphotoalbum" in text and "documents" in text


def test_eval_skips_an_image_it_cannot_decode_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged photo in the user's folder is named and left out, not a traceback."""
    (tmp_path / "documents").mkdir()
    good = sorted((FIXTURES / "documents").glob("*.jpg"))[0]
    shutil.copy(good, tmp_path / "documents" / good.name)
    (tmp_path / "documents" / "cut.jpg").write_bytes(good.read_bytes()[:500])
    assert evaluate.main([str(tmp_path), "--json", "--backend", "litert-scene"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["cases"] == 4
    assert captured.err.count("\n") == 1
    assert f"skipped {tmp_path / 'documents' / 'cut.jpg'}: cannot be decoded" in captured.err
    (tmp_path / "documents" / good.name).unlink()
    assert evaluate.main([str(tmp_path), "--backend", "litert-scene"]) == 2
    assert "no readable images" in capsys.readouterr().err


def test_eval_rows_per_kind_and_the_worst_images_by_name() -> None:
    cases = [Case("people", t, t, 0.99, "people/a.jpg") for t in (0, 90, 180, 270)]
    cases += [Case("documents", 0, 180, 0.97, "documents/b.jpg"),
              Case("documents", 90, 90, 0.99, "documents/b.jpg"),
              Case("documents", 180, 0, 0.5, "documents/b.jpg"),
              Case("documents", 270, 270, 0.99, "documents/b.jpg")]
    cases += [Case("documents", t, (t + 90) % 360, 0.4, "documents/c.jpg")
              for t in (0, 90, 180, 270)]
    rows = {g: (n, acc, r) for g, n, acc, r in evaluate.group_rows(cases, 0.9)}
    assert rows["people"][:2] == (4, 1.0) and rows["people"][2].coverage == 1.0
    n, acc, at = rows["documents"]
    assert (n, acc) == (8, 0.25)
    assert at.coverage == 3 / 8 and at.risk == pytest.approx(1 / 3)
    assert at.decided_correct == 2 / 8
    worst = evaluate.worst_images(cases, 0.9)
    # b is wrong while decided once (0.97 >= 0.9): it comes before c, wrong 4 times but unsure
    assert [(w.name, w.wrong_decided, w.wrong) for w in worst] == [
        ("documents/b.jpg", 1, 2), ("documents/c.jpg", 0, 4)]
    assert worst[0].worst_confidence == 0.97
    text = evaluate.report(cases, 0.9)
    assert "documents/b.jpg" in text and "people/a.jpg" not in text
    assert "37.5%" in text  # documents decided at 0.9


def test_eval_rejects_an_empty_or_missing_folder(tmp_path: Path) -> None:
    assert evaluate.main([str(tmp_path)]) == 2
    assert evaluate.main([str(tmp_path / "nope")]) == 2


def test_bench_prints_a_row_per_variant_and_thread_count(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    shipped = default_model_dir() / "orientation.tflite"
    assert benchmark.main(["--model", str(shipped), "--runs", "3", "--threads", "1,2",
                           "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["threads"] for r in rows} == {1, 2}
    for r in rows:
        assert r["size_mb"] > 0.5 and r["p95_ms"] >= r["p50_ms"] > 0 and r["peak_rss_mb"] > 10


def test_bench_cues_times_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = default_model_dir() / "orientation.tflite"
    assert benchmark.main(["--model", str(shipped), "--runs", "3", "--threads", "1", "--cues",
                           "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    scene = rows["orientation.tflite"]
    cues = rows["orientation.tflite + text + faces (all cues), 1-pass"]
    tta = rows["orientation.tflite all cues, 4-pass"]
    adaptive = rows["orientation.tflite all cues, adaptive (default)"]
    assert cues["size_mb"] == tta["size_mb"] == adaptive["size_mb"] > scene["size_mb"]
    assert tta["p50_ms"] > cues["p50_ms"]  # four network passes cost more than one
    assert (scene["four_pass_share"], cues["four_pass_share"], tta["four_pass_share"]) == (0, 0, 1)
    assert (scene["text_share"], cues["text_share"], tta["text_share"]) == (0, 1, 1)


def test_bench_table_keeps_its_columns_under_the_longest_row_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    shipped = default_model_dir() / "orientation.tflite"
    assert benchmark.main(["--model", str(shipped), "--runs", "2", "--threads", "1",
                           "--cues"]) == 0
    head, rule, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 4 and set(rule) == {"-"}
    end = head.index("runtime") + len("runtime")  # right-aligned: values end where it ends
    assert any(row.startswith("orientation.tflite + text + faces (all cues), 1-pass")
               for row in rows)
    for row in rows:
        assert len(row) == len(head) == len(rule)
        assert row[:end].endswith(" litert") and row[end] == " "
        assert row[head.index("text") + len("text") - 1] == "%"


def test_bench_on_real_photos_counts_the_adaptive_escalations(
        capsys: pytest.CaptureFixture[str]) -> None:
    # pictures of which some escalate and some skip the text network (both shares strictly
    # between 0 and 1 with the shipped sidecar)
    photos = FIXTURES_DIR / "orientation" / "gcompris-qt-data"
    n_cases = 4 * len(list(photos.iterdir()))
    shipped = default_model_dir() / "orientation.tflite"
    assert benchmark.main(["--model", str(shipped), "--runs", "1", "--threads", "1", "--cues",
                           "--images", str(photos), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    adaptive = rows["orientation.tflite all cues, adaptive (default)"]
    # every case timed once (runs < cases); the shares are what the backend itself does there
    clf = load_classifier("auto", shipped, 1)
    try:
        cues = [dict(clf.predict(im).cues) for im in benchmark.bench_images(photos)]
    finally:
        clf.close()
    assert len(cues) == n_cases
    assert adaptive["four_pass_share"] == pytest.approx(
        sum(c["passes"] == 4.0 for c in cues) / n_cases)
    ran_text = sum("text" in c for c in cues) / n_cases
    assert adaptive["text_share"] == pytest.approx(ran_text) and 0 < ran_text < 1
    assert benchmark.main(["--images", str(photos / "nope")]) == 2
