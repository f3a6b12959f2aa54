"""``model.runtime: onnxruntime``: the shipped .onnx files on ONNX Runtime give LiteRT's answers
on the real fixture images, through the same classifiers, and a missing runtime or execution
provider is one clear error. Skipped where onnxruntime is not installed (it is optional)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import FIXTURES_DIR, REPO_ROOT
from PIL import Image

from rotwatchd.cli.main import main
from rotwatchd.evaluation.accuracy import resave, turned, upright_images
from rotwatchd.model import CORRECTIONS, ModelError, load_classifier
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.model.faces import FaceCue
from rotwatchd.model.fusion import AdaptiveClassifier
from rotwatchd.model.network import Runtime

ort = pytest.importorskip("onnxruntime")

FIXTURES = FIXTURES_DIR / "orientation"
FACES = FIXTURES_DIR / "faces"
ONNX = Runtime("onnxruntime")


def _cases() -> list[Image.Image]:
    """Every fixture image (photos and documents) turned 4 ways, re-saved as JPEG q90."""
    out = []
    for _group, path in upright_images(FIXTURES):
        with Image.open(path) as raw:
            upright = raw.convert("RGB")
        out += [resave(turned(upright, c), "jpeg", 90) for c in CORRECTIONS]
    return out


CASES = _cases()


def _answers(clf: OrientationClassifier) -> list[tuple[int, float]]:
    try:
        return [(p.correction, p.confidence) for p in map(clf.predict, CASES)]
    finally:
        clf.close()


@pytest.mark.parametrize("backend", ["auto", "litert", "litert-tta"])
def test_onnxruntime_gives_litert_answers_on_the_fixtures(backend: str) -> None:
    litert = load_classifier(backend, None, 1)
    threshold = float(getattr(litert, "min_confidence"))  # noqa: B009 - every backend has one
    onnx = load_classifier(backend, None, 1, ONNX)
    assert float(getattr(onnx, "min_confidence")) == threshold  # noqa: B009 - one sidecar
    a, b = _answers(litert), _answers(onnx)
    same = np.mean([x[0] == y[0] for x, y in zip(a, b, strict=True)])
    decided = np.mean([(x[1] >= threshold) == (y[1] >= threshold)
                       and (x[1] < threshold or x[0] == y[0]) for x, y in zip(a, b, strict=True)])
    assert len(a) == 112
    assert same >= 0.99 and decided >= 0.98, (same, decided)


def test_the_adaptive_backend_runs_every_network_on_onnxruntime() -> None:
    clf = load_classifier("auto", None, 1, ONNX)
    try:
        assert isinstance(clf, AdaptiveClassifier)
        assert clf.scene.runtime == ONNX and clf.text is not None and clf.faces is not None
        assert type(clf.scene._net).__name__ == "OnnxNetwork"
        assert type(clf.text._net).__name__ == "OnnxNetwork"  # type: ignore[attr-defined]
    finally:
        clf.close()


def test_face_scores_are_litert_scores() -> None:
    lite, onnx = FaceCue(), FaceCue(runtime=ONNX)
    try:
        for path in sorted(FACES.glob("*.jpg")):
            with Image.open(path) as raw:
                image = raw.convert("RGB")
            for correction in (0, 90):
                im = image.rotate(correction, expand=True)
                assert np.allclose(lite.scores(im), onnx.scores(im), atol=1e-3), path.name
    finally:
        lite.close()
        onnx.close()


def _config(tmp_path: Path, model: str) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "rotwatchd.yaml"
    path.write_text(f"inboxes: [{{path: inbox, output: outbox}}]\nmodel: {model}\n")
    return path


def _check(tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, list[dict[str, object]], str]:
    image = tmp_path / "turned.jpg"
    if not image.exists():
        CASES[5].save(image, quality=95)
    rc = main(["check", str(image), "--json", "-c", str(_config(tmp_path, model))])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def test_check_follows_model_runtime_in_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc_lite, lite, _ = _check(tmp_path, "{runtime: litert}", capsys)
    rc_onnx, onnx, _ = _check(tmp_path, "{runtime: onnxruntime, "
                                         "providers: [CPUExecutionProvider]}", capsys)
    assert rc_lite == rc_onnx == 0
    assert lite[0]["correction"] == onnx[0]["correction"] == 90
    assert lite[0]["decision"] == onnx[0]["decision"]
    assert abs(float(lite[0]["confidence"]) - float(onnx[0]["confidence"])) < 0.03  # type: ignore[arg-type]


def test_a_missing_provider_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _check(tmp_path, "{runtime: onnxruntime, "
                                    "providers: [TensorrtExecutionProvider]}", capsys)
    assert rc == 1 and out == []
    assert err.splitlines() == [
        "rotwatchd: model: model.providers: TensorrtExecutionProvider is not available in this "
        f"onnxruntime (available: {', '.join(ort.get_available_providers())})"]


def test_a_runtime_typo_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "{runtime: onnx}")
    assert main(["config", "check", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{config}: model.runtime: 'onnx' is not one of: litert, onnxruntime"]


@pytest.fixture
def no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """onnxruntime as an install without it sees it: importing it fails."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    yield


@pytest.mark.usefixtures("no_onnxruntime")
def test_without_onnxruntime_the_error_says_what_to_install() -> None:
    with pytest.raises(ModelError) as err:
        load_classifier("auto", None, 1, ONNX)
    assert str(err.value) == ("model.runtime onnxruntime needs the onnxruntime package: "
                              "pip install 'rotwatchd[onnx]'")
    load_classifier("litert-scene", None, 1).close()  # LiteRT never needed it


def test_a_missing_onnx_file_names_it(tmp_path: Path) -> None:
    model = tmp_path / "orientation.tflite"
    model.write_bytes((FIXTURES.parent.parent.parent / "models" / "orientation.tflite")
                      .read_bytes())
    with pytest.raises(ModelError, match=r"orientation model not found: .*orientation\.onnx"):
        load_classifier("litert-scene", model, 1, ONNX)


def test_the_litert_daemon_imports_neither_onnxruntime_nor_torch() -> None:
    """onnxruntime is optional and imported only when a network opens on it; torch never."""
    code = ("import sys; from rotwatchd.service.daemon import load_configured_classifier; "
            "from rotwatchd.config import ModelConfig; "
            "load_configured_classifier(ModelConfig()).close(); "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "[]"
