"""Adaptation in the daemon: what is collected, when (injected clock and sleep state), how a
head comes into use, what status shows, and ``rotwatchd adapt``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import fast_config, make_photo, wait_until
from helpers.paths import FIXTURES_DIR
from PIL import Image

from rotwatchd.adapt.runtime import (
    HEAD_NAME,
    RECHECK_MIN,
    Adapter,
    AdaptRuntime,
    AdaptWorker,
    adapt_dir,
    label_folders,
    next_step,
    personal_factory,
)
from rotwatchd.cli.main import main
from rotwatchd.config import AdaptConfig, ModelConfig
from rotwatchd.model.base import OrientationClassifier
from rotwatchd.model.personal import (
    LabelCues,
    PersonalClassifier,
    PersonalHead,
    Support,
    model_digest,
    model_path_or_default,
    personal_bytes,
    shipped_head,
)
from rotwatchd.model.sidecar import ModelMeta
from rotwatchd.power.sleep import PowerState, SleepController
from rotwatchd.service.status import format_status

FIXTURES = FIXTURES_DIR / "orientation"
SETTINGS = AdaptConfig(min_labels=3, after_idle=600.0)


def test_adaptation_waits_for_a_long_enough_sleep_then_collects_then_fits() -> None:
    s = SETTINGS
    assert next_step(5000.0, None, s, pending=10, new_labels=500) == (None, None)  # awake
    assert next_step(1100.0, 1000.0, s, 10, 500) == (None, 500.0)  # asleep 100 s of 600
    assert next_step(1600.0, 1000.0, s, 10, 500) == ("collect", 0.0)
    assert next_step(1600.0, 1000.0, s, 0, 3) == ("fit", 0.0)
    # too few new labels: look again later (a review answer needs no wake-up)
    assert next_step(1600.0, 1000.0, s, 0, 2) == (None, 600.0)
    assert next_step(1600.0, 1000.0, AdaptConfig(after_idle=0.0), 0, 2) == (None, RECHECK_MIN)
    off = AdaptConfig(enabled=False)
    assert next_step(9999.0, 0.0, off, 10, 500) == (None, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exif_photos(daemon_factory: Callable[..., Any], tmp_path: Path, n: int) -> Any:
    """A daemon that has turned ``n`` EXIF-tagged photos and kept one upright untagged."""
    config = fast_config(tmp_path)
    for i in range(n):
        make_photo(tmp_path / "inbox" / f"tagged{i}.jpg", exif_orientation=6, seed=i,
                   size=(160, 120))
    make_photo(tmp_path / "inbox" / "plain.jpg", seed=99, size=(160, 120))
    daemon, results = daemon_factory(config)
    done = results.wait_count(n + 1)
    assert sorted(r.decision.source for r in done if r.decision) == ["exif"] * n + ["model"]
    return config, daemon


def test_labels_are_collected_and_fitted_only_while_asleep(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config, daemon = _exif_photos(daemon_factory, tmp_path, 3)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    clock = Clock()
    worker = AdaptWorker(adapter, clock=clock)
    assert worker.step() is None and adapter.store.count() == 0  # awake: nothing
    worker.on_power_state(PowerState.ASLEEP)
    assert worker.step() == 600.0 and adapter.store.count() == 0  # not asleep long enough
    clock.now += 600
    assert worker.step() == 0.0
    assert adapter.store.counts() == {"exif": 3, "human": 0}  # the untagged one is no label
    assert adapter.store.load().features.shape == (3, 4, 1280)
    assert worker.step() == 0.0 and worker.fits == 1  # 3 new labels: a fit
    status = adapter.status()
    assert status["personal_head"] is False
    assert "only 3 labelled photos" in status["last_fit"]["reason"]  # too few to judge
    assert worker.step() == 600.0 and worker.fits == 1  # nothing new: look again later
    adapter.close()


def test_a_file_arriving_stops_the_collection_before_the_next_photo(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config, daemon = _exif_photos(daemon_factory, tmp_path, 3)
    worker: AdaptWorker | None = None

    class WakingCues(LabelCues):
        def __call__(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
            assert worker is not None
            worker.on_power_state(PowerState.AWAKE)  # a file arrives during the first photo
            return super().__call__(image)

    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      cues=WakingCues)
    clock = Clock()
    worker = AdaptWorker(adapter, clock=clock)
    worker.on_power_state(PowerState.ASLEEP)
    clock.now += 600
    worker.step()
    assert adapter.store.count() == 1 and adapter.pending() == 2  # the rest waits
    adapter.close()



def test_a_review_answer_given_while_asleep_is_collected_without_a_wake_up(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    from rotwatchd.service.journal import Journal
    from rotwatchd.service.review import ReviewQueue

    config = fast_config(tmp_path, model={"min_confidence": 1.0})  # every guess goes to review
    make_photo(config.inboxes[0].path / "turned.jpg", correction=90, size=(160, 120))
    daemon, results = daemon_factory(config)
    assert results.wait_count(1)[0].outcome == "review"
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    clock = Clock()
    worker = AdaptWorker(adapter, clock=clock)
    worker.on_power_state(PowerState.ASLEEP)
    clock.now += 600
    wait = worker.step()
    assert wait == 600.0 and adapter.store.count() == 0  # nothing to learn yet: look later
    with Journal(config.state_dir) as journal:  # as `rotwatchd review apply` does, apart
        queue = ReviewQueue(config, journal)
        queue.settle(queue.waiting()[0].id, 90)
    clock.now += wait  # still asleep: no power change notifies the worker
    assert worker.step() == 0.0
    assert adapter.store.counts() == {"exif": 0, "human": 1}
    adapter.close()


def test_status_follows_an_adapt_forget_from_another_process_while_asleep(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config, daemon = _exif_photos(daemon_factory, tmp_path, 2)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    clock, published = Clock(), []
    worker = AdaptWorker(adapter, clock=clock, on_changed=lambda: published.append(
        adapter.status()["labels"]))
    worker.on_power_state(PowerState.ASLEEP)
    clock.now += 600
    assert worker.step() == 0.0 and published == [{"exif": 2, "human": 0}]  # collected
    wait = worker.step()
    assert wait == 600.0 and len(published) == 2  # the first idle look of this sleep
    assert worker.step() == 600.0 and len(published) == 2  # nothing changed: nothing sent
    other = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())  # the CLI's
    assert other.forget() == 2
    other.close()
    clock.now += wait
    worker.step()
    assert published[-1] == {"exif": 0, "human": 0}  # no wake-up needed to show it
    adapter.close()

HEAD_FIGURES = {"accepted": True, "labels_held_out": 40,
                "shipped": {"decided_correct": 0.2, "wrong_among_decided": 0.0},
                "personal": {"decided_correct": 0.5, "wrong_among_decided": 0.005},
                "support": {"centroids": 60, "held_out_inside": 0.99}}


def _accepted_head(state_dir: Path, digest: str | None = None,
                   figures: dict[str, Any] | None = None,
                   shipped_threshold: float | None = None) -> None:
    meta = ModelMeta.for_model(model_path_or_default(None))
    # radius 1: every picture inside (the features are non-negative: cosine distance <= 1)
    everywhere = Support(np.ones((1, 1280), np.float32) / np.sqrt(1280), 1.0)
    personal = PersonalHead(shipped_head(None, meta.temperature), 0.9,
                            meta.threshold("cascade") if shipped_threshold is None
                            else shipped_threshold, digest or model_digest(None), everywhere,
                            HEAD_FIGURES if figures is None else figures)
    adapt_dir(state_dir).mkdir(parents=True, exist_ok=True)
    (adapt_dir(state_dir) / HEAD_NAME).write_bytes(personal_bytes(personal))


def test_an_accepted_head_decides_in_the_default_backend_only(tmp_path: Path) -> None:
    built: list[str] = []

    def base(model: ModelConfig) -> OrientationClassifier:
        built.append(model.backend)
        from rotwatchd.model import load_classifier
        return load_classifier(model.backend, model.path, model.threads)

    make = personal_factory(tmp_path, base)
    assert not isinstance(make(ModelConfig()), PersonalClassifier)  # no head yet
    _accepted_head(tmp_path)
    personal = make(ModelConfig())
    assert isinstance(personal, PersonalClassifier)
    with Image.open(FIXTURES / "kphotoalbum" / "kphotoalbum-00018.jpg") as raw:
        photo = raw.convert("RGB")
    shipped = base(ModelConfig())
    try:  # a photo the shipped default is unsure of: the personal head's to decide
        assert shipped.predict(photo).confidence < ModelMeta.for_model(
            model_path_or_default(None)).threshold("cascade")
    finally:
        shipped.close()
    prediction = personal.predict(photo)
    assert ("personal", 1.0) in prediction.cues
    assert not isinstance(make(ModelConfig(backend="litert-tta")), PersonalClassifier)
    _accepted_head(tmp_path, digest="0" * 64)  # fitted for another scene model
    assert not isinstance(make(ModelConfig()), PersonalClassifier)
    assert built == ["auto", "auto", "litert-tta", "auto"]


def test_status_shows_the_head_in_use_and_its_figures(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    _accepted_head(config.state_dir)
    daemon, _ = daemon_factory(config, start=False)
    sleep = SleepController(config.power, None, lambda: 0)
    runtime = AdaptRuntime.attach(daemon, sleep)
    document = daemon.snapshot()
    runtime.close()  # the daemon never starts, so never stops: its label store closes here
    json.dumps(document)  # plain JSON for the web page
    assert document["adapt"]["personal_head"] is True
    assert document["adapt"]["in_use"]["personal"]["decided_correct"] == 0.5
    text = format_status({**document, "running": True})
    assert "personal head in use: on 40 held-out photos x 4, decided correctly 20.0% " \
           "(shipped) -> 50.0%" in text
    assert "it decides only photos like its labels: 60 centroids, 99.0% of held-out photos " \
           "inside" in text


@pytest.mark.parametrize(("figures", "line"), [
    ({"accepted": True}, "personal head in use (the figures it was accepted with are not "
                         "recorded)"),
    ({k: v for k, v in HEAD_FIGURES.items() if k != "labels_held_out"},
     "personal head in use: decided correctly 20.0% (shipped) -> 50.0%, wrong among "
     "decided 0.5%"),
])
def test_status_says_nothing_of_figures_a_head_does_not_carry(
        daemon_factory: Callable[..., Any], tmp_path: Path, figures: dict[str, Any],
        line: str) -> None:
    """A head whose figures lack the held-out count never reads "on None held-out photos"."""
    config = fast_config(tmp_path)
    _accepted_head(config.state_dir, figures=figures)
    daemon, _ = daemon_factory(config, start=False)
    runtime = AdaptRuntime.attach(daemon, SleepController(config.power, None, lambda: 0))
    document = daemon.snapshot()
    runtime.close()
    text = format_status({**document, "running": True})
    assert "  " + line in text.splitlines()
    assert "None" not in text


def _config_with_a_head(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, state folder) of a setup whose state holds an accepted personal head."""
    (tmp_path / "inbox").mkdir()
    cfg = tmp_path / "rotwatchd.yaml"
    cfg.write_text("inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n")
    _accepted_head(tmp_path / "state")
    return cfg, tmp_path / "state"


def test_adapt_forget_deletes_the_labels_and_the_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, state = _config_with_a_head(tmp_path)
    from rotwatchd.adapt.labels import LabelStore
    with LabelStore(adapt_dir(state)) as store:
        store.add("a" * 64, "exif", np.ones((4, 1280)))
    assert main(["adapt", "-c", str(cfg), "--forget"]) == 0
    assert "forgot 1 label(s) and the personal head" in capsys.readouterr().out
    assert not (adapt_dir(state) / HEAD_NAME).exists()
    with LabelStore(adapt_dir(state)) as store:
        assert store.count() == 0
    assert main(["adapt", "-c", str(cfg)]) == 1  # nothing to learn from: said, not crashed
    out = capsys.readouterr().out
    assert "personal head not fitted: no labels to learn from" in out
    assert "no fit" in out and "trained on" not in out  # nothing reads as if it trained
    assert main(["adapt", "-c", str(cfg), "--forget"]) == 0  # again: no head to speak of
    assert "forgot 0 label(s) (there was no personal head)" in capsys.readouterr().out


def test_a_rejected_fit_says_an_earlier_head_stays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, state = _config_with_a_head(tmp_path)
    assert main(["adapt", "-c", str(cfg)]) == 1  # this fit: nothing to learn from
    out = capsys.readouterr().out
    assert "personal head not fitted: no labels to learn from" in out
    assert "the personal head fitted before stays where it was" in out
    assert (adapt_dir(state) / HEAD_NAME).is_file()
    assert main(["adapt", "-c", str(cfg), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["earlier_head_kept"] is True


def test_a_rejected_fit_says_an_earlier_head_of_another_sidecar_is_not_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The head kept after a rejected fit was fitted for another calibration of the sidecar:
    `adapt` must not leave it reading as if it decided."""
    (tmp_path / "inbox").mkdir()
    cfg = tmp_path / "rotwatchd.yaml"
    cfg.write_text("inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n")
    now = ModelMeta.for_model(model_path_or_default(None)).threshold("cascade")
    earlier = now + 0.005 if now < 0.99 else now - 0.005
    _accepted_head(tmp_path / "state", shipped_threshold=earlier)
    assert main(["adapt", "-c", str(cfg), "--json"]) == 1  # this fit: nothing to learn from
    figures = json.loads(capsys.readouterr().out)
    assert figures["earlier_head_kept"] is True
    assert figures["not_used"] == ("fitted for another calibration of the scene model"
                                   f": review threshold {earlier:g}, now {now:g}")


def test_adapt_says_when_the_configured_runtime_never_runs_the_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, state = _config_with_a_head(tmp_path)
    cfg.write_text(cfg.read_text() + "model: {runtime: onnxruntime}\n")
    assert main(["adapt", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "the personal head fitted before stays where it was" in out
    assert ("but the daemon does not use it with this config (model.runtime onnxruntime: it "
            "needs the LiteRT scene network's features output): the shipped head decides") in out
    assert main(["adapt", "-c", str(cfg), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["not_used"].startswith("model.runtime")
    cfg.write_text(cfg.read_text().replace("onnxruntime", "litert"))
    assert main(["adapt", "-c", str(cfg), "--json"]) == 1
    assert "not_used" not in json.loads(capsys.readouterr().out)


def _head_without_support(state_dir: Path) -> None:
    """A head file as written before the support gate: weights, bias and meta only."""
    meta = ModelMeta.for_model(model_path_or_default(None))
    head = shipped_head(None, meta.temperature)
    adapt_dir(state_dir).mkdir(parents=True, exist_ok=True)
    np.savez(adapt_dir(state_dir) / HEAD_NAME, weight=head.weight, bias=head.bias,
             meta=np.frombuffer(json.dumps({
                 "threshold": 0.3, "shipped_threshold": meta.threshold("cascade"),
                 "model_digest": model_digest(None), "figures": {"accepted": True},
             }).encode(), dtype=np.uint8))


def test_a_head_saved_without_a_support_is_never_used_and_is_refitted(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config, daemon = _exif_photos(daemon_factory, tmp_path, 3)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    clock = Clock()
    worker = AdaptWorker(adapter, clock=clock)
    worker.on_power_state(PowerState.ASLEEP)
    clock.now += 600
    assert worker.step() == 0.0 and adapter.store.count() == 3
    assert worker.step() == 0.0 and worker.fits == 1 and adapter.new_labels() == 0
    adapter.close()

    _head_without_support(config.state_dir)
    from rotwatchd.model.personal import read_personal
    assert read_personal(adapt_dir(config.state_dir) / HEAD_NAME) is None
    built: list[str] = []

    def base(model: ModelConfig) -> OrientationClassifier:
        built.append(model.backend)
        from rotwatchd.model import load_classifier
        return load_classifier(model.backend, model.path, model.threads)

    assert not isinstance(personal_factory(config.state_dir, base)(ModelConfig()),
                          PersonalClassifier)  # the shipped head decides: never ungated
    assert built == ["auto"]
    again = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    assert again.status()["personal_head"] is False
    assert again.new_labels() == 3  # every label counts as new: refitted at the next idle
    again.close()


def test_the_final_status_of_a_stopped_daemon_still_shows_the_adaptation(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The label store closes when the daemon stops; the status published after that still
    counts the labels (it said "Cannot operate on a closed database" and `status` dropped the
    adaptation lines)."""
    from rotwatchd.service.status import read_status

    config = fast_config(tmp_path)
    _accepted_head(config.state_dir)
    daemon, _ = daemon_factory(config, start=False)
    runtime = AdaptRuntime.attach(daemon, SleepController(config.power, None, lambda: 0))
    runtime.worker.adapter.store.add("a" * 64, "human", np.ones((4, 1280)),
                                     model=model_digest(None))
    daemon.start()
    daemon.stop()
    document = read_status(config.state_dir)
    assert document is not None and document["running"] is False
    assert document["adapt"]["labels"] == {"exif": 0, "human": 1}
    assert document["adapt"]["personal_head"] is True
    assert "adaptation: on, labels exif 0, human 1" in format_status(document)


def _adapter_status(state: Path) -> dict[str, Any]:
    """What a daemon's Adapter on ``state`` (shipped model settings) reports."""
    from rotwatchd.service.journal import Journal

    with Journal(state) as journal:
        adapter = Adapter(state, journal, SETTINGS, ModelConfig())
        try:
            return adapter.status()
        finally:
            adapter.close()


def test_a_head_for_another_scene_model_is_not_reported_in_use(tmp_path: Path) -> None:
    _accepted_head(tmp_path / "state", digest="0" * 64)
    document = _adapter_status(tmp_path / "state")
    assert document["personal_head"] is False
    assert document["not_used"] == "fitted for another scene model"
    text = format_status({"adapt": document})
    assert "personal head: not used (fitted for another scene model; the shipped head " \
           "decides)" in text
    assert "personal head in use" not in text


def test_a_head_fitted_for_another_sidecar_is_neither_used_nor_reported_in_use(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An upgrade that keeps the scene network but ships another calibration (release 8.4:
    the adaptive review threshold 0.96 -> 0.955, other fusion weights) leaves a head fitted
    before with the same model digest; its confidences were mapped onto the old threshold, so
    at the new one it would decide pictures below its own calibrated threshold."""
    now = ModelMeta.for_model(model_path_or_default(None)).threshold("cascade")
    earlier = now + 0.005 if now < 0.99 else now - 0.005
    _accepted_head(tmp_path / "state", shipped_threshold=earlier)
    built: list[str] = []

    def base(model: ModelConfig) -> OrientationClassifier:
        built.append(model.backend)
        from rotwatchd.model import load_classifier
        return load_classifier(model.backend, model.path, model.threads)

    made = personal_factory(tmp_path / "state", base)(ModelConfig())
    try:
        assert not isinstance(made, PersonalClassifier) and built == ["auto"]
    finally:
        made.close()
    why = (f"fitted for another calibration of the scene model: review threshold {earlier:g}, "
           f"now {now:g}")
    assert f"personal head not used (the personal head was {why})" in caplog.text
    document = _adapter_status(tmp_path / "state")
    assert document["personal_head"] is False and document["not_used"] == why
    assert "personal head in use" not in format_status({"adapt": document})


@pytest.mark.parametrize(("model", "why"), [
    (ModelConfig(runtime="onnxruntime"),
     "model.runtime onnxruntime: it needs the LiteRT scene network's features output"),
    (ModelConfig(backend="litert"), "model.backend litert: only the default backend uses it"),
], ids=["onnxruntime", "one-pass backend"])
def test_a_head_these_model_settings_never_run_is_not_reported_in_use(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, model: ModelConfig, why: str) -> None:
    """status must say what the daemon does: with these settings the daemon's classifier is
    the shipped one (the ONNX scene model has no features output), so the head is not in use."""
    from rotwatchd.service.journal import Journal

    built: list[ModelConfig] = []

    def base(config: ModelConfig) -> OrientationClassifier:
        built.append(config)
        from rotwatchd.model import load_classifier
        return load_classifier("litert-scene")

    _accepted_head(tmp_path / "state")
    made = personal_factory(tmp_path / "state", base)(model)
    try:
        assert not isinstance(made, PersonalClassifier) and built == [model]
    finally:
        made.close()
    assert model.runtime == "litert" or f"personal head not used ({why}" in caplog.text
    with Journal(tmp_path / "state") as journal:
        adapter = Adapter(tmp_path / "state", journal, SETTINGS, model)
        try:
            document = adapter.status()
        finally:
            adapter.close()
    assert document["personal_head"] is False and document["not_used"] == why
    text = format_status({"adapt": document})
    assert f"personal head: not used ({why}; the shipped head decides)" in text
    assert "personal head in use" not in text


def test_labels_collected_by_an_earlier_network_are_not_fitted_on(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """After an upgrade the store still holds labels whose features the earlier scene
    network computed: the head is fitted on this network's labels only."""
    config, daemon = _exif_photos(daemon_factory, tmp_path, 3)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    try:
        for i in range(40):
            adapter.store.add(f"{i:064d}", "exif", np.ones((4, 1280)), model="0" * 64)
        assert adapter.collect() == 3
        assert len(adapter.store.load(model_digest(None))) == 3
        result = adapter.fit()
        assert result.verdict.reason == "not fitted: only 3 labelled photos (need 30)"
    finally:
        adapter.close()


def _as_if_an_earlier_network(adapter: Adapter) -> dict[str, np.ndarray]:
    """Collect now, then store every label again as an earlier network would have: other
    features, another digest. Returns this network's features by SHA-256."""
    adapter.collect()
    current = adapter.store.load(model_digest(None))
    for sha256, source in zip(current.sha256, current.source, strict=True):
        adapter.store.add(sha256, source, np.ones((4, 1280)), model="0" * 64)
    return dict(zip(current.sha256, current.features, strict=True))


def test_after_a_model_upgrade_earlier_labels_are_counted_apart_and_computed_again(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """Labels an earlier scene network computed are not counted as labels; collecting
    computes them again with this network from the upright outputs still in the outbox, once
    each: not a photo the journal no longer knows, nor an output changed since it was
    written."""
    config, daemon = _exif_photos(daemon_factory, tmp_path, 4)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      folders=label_folders(config))
    try:
        first = _as_if_an_earlier_network(adapter)
        assert len(first) == 4
        adapter.store.add("9" * 64, "human", np.ones((4, 1280)), model="0" * 64)  # long gone
        edited = next(r for r in daemon.journal.labelled_after(0.0, 10)
                      if r.output and r.output.endswith("tagged0.jpg"))
        make_photo(Path(edited.output or ""), seed=50, size=(160, 120))  # the user's edit
        status = adapter.status()
        assert status["labels"] == {"exif": 0, "human": 0}
        assert status["labels_earlier_network"] == 5
        assert ("adaptation: on, labels exif 0, human 0 (5 more computed by an earlier scene "
                "network") in format_status({"adapt": status})
        added = adapter.new_labels()
        assert adapter.pending() == 5
        assert adapter.collect() == 3  # the three outputs as the daemon wrote them
        assert adapter.pending() == 0  # the two others are tried once, not at every idle
        assert adapter.new_labels() == added + 3  # a refit follows
        status = adapter.status()
        assert status["labels"] == {"exif": 3, "human": 0}
        assert status["labels_earlier_network"] == 2
        again = adapter.store.load(model_digest(None))
        assert edited.sha256 not in again.sha256
        for sha256, features in zip(again.sha256, again.features, strict=True):
            assert np.allclose(features, first[sha256], atol=1e-2)  # this network's again
    finally:
        adapter.close()


def test_earlier_labels_are_never_read_again_outside_the_configured_folders(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    config, daemon = _exif_photos(daemon_factory, tmp_path, 2)
    unconfigured = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig())
    try:  # no folders given: nothing is read again, nothing is pending for it
        _as_if_an_earlier_network(unconfigured)
        assert unconfigured.pending() == 0 and unconfigured.collect() == 0
        assert unconfigured.status()["labels_earlier_network"] == 2
    finally:
        unconfigured.close()
    inbox_only = (config.inboxes[0].path,)  # the outputs lie in the outbox
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      folders=inbox_only)
    try:
        assert adapter.pending() == 2
        assert adapter.collect() == 0 and adapter.pending() == 0
        assert adapter.status()["labels_earlier_network"] == 2
    finally:
        adapter.close()


def test_a_first_collection_reads_only_outputs_as_the_daemon_wrote_them(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """An upright output the user edited afterwards (it may no longer stand the way its
    label says) and one swapped for a symbolic link to a picture outside every configured
    folder are not collected; the rest are."""
    config, daemon = _exif_photos(daemon_factory, tmp_path, 4)
    outputs = {Path(r.output).name: Path(r.output)
               for r in daemon.journal.labelled_after(0.0, 10) if r.output}
    make_photo(outputs["tagged0.jpg"], seed=50, size=(160, 120))  # edited after it was written
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_photo(outside / "private.jpg", seed=51, size=(160, 120))
    outputs["tagged1.jpg"].unlink()
    outputs["tagged1.jpg"].symlink_to(outside / "private.jpg")
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      folders=label_folders(config))
    try:
        assert adapter.collect() == 2
        assert adapter.pending() == 0  # the two refused are passed over, not retried
        collected = set(adapter.store.load(model_digest(None)).sha256)
        by_name = {Path(r.output).name: r.sha256
                   for r in daemon.journal.labelled_after(0.0, 10) if r.output}
        assert collected == {by_name["tagged2.jpg"], by_name["tagged3.jpg"]}
    finally:
        adapter.close()


def test_an_output_replaced_with_its_old_mtime_put_back_is_not_read(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The writer gives an upright output its original's mtime, so ``mv``, ``cp -p`` or a
    restore from a backup can put another picture in its place with an mtime older than the
    write: neither a first collection nor one after an upgrade reads such a file (its ctime
    tells); the outputs left as written are read."""
    config, daemon = _exif_photos(daemon_factory, tmp_path, 3)
    outputs = {Path(r.output).name: Path(r.output)
               for r in daemon.journal.labelled_after(0.0, 10) if r.output}
    by_name = {Path(r.output).name: r.sha256
               for r in daemon.journal.labelled_after(0.0, 10) if r.output}

    def swap(name: str, seed: int) -> None:
        target = outputs[name]
        old = target.stat()
        other = tmp_path / f"other{seed}.jpg"
        make_photo(other, seed=seed, size=(160, 120))
        os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
        other.rename(target)  # as mv does: another picture, the old mtime
        assert target.stat().st_mtime_ns == old.st_mtime_ns

    swap("tagged0.jpg", 60)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      folders=label_folders(config))
    try:
        assert adapter.collect() == 2
        collected = set(adapter.store.load(model_digest(None)).sha256)
        assert collected == {by_name["tagged1.jpg"], by_name["tagged2.jpg"]}
        _as_if_an_earlier_network(adapter)  # now as if computed by an earlier network
        swap("tagged1.jpg", 61)
        assert adapter.collect() == 1
        again = set(adapter.store.load(model_digest(None)).sha256)
        assert again == {by_name["tagged2.jpg"]}
    finally:
        adapter.close()



def _attached_with_two_tagged(daemon_factory: Callable[..., Any], tmp_path: Path,
                              adapt: dict[str, Any]
                              ) -> tuple[Any, AdaptRuntime, Callable[[], dict[str, Any]]]:
    """A started daemon with adaptation attached (``adapt`` settings) that has turned two
    EXIF-tagged photos: (daemon, runtime, a reader of the status.json it last published)."""
    from rotwatchd.service.status import read_status

    config = fast_config(tmp_path, adapt=adapt)
    daemon, results = daemon_factory(config, start=False)
    runtime = AdaptRuntime.attach(daemon, SleepController(config.power, None, lambda: 0))
    daemon.start()
    for i in range(2):
        make_photo(tmp_path / "inbox" / f"tagged{i}.jpg", exif_orientation=6, seed=i,
                   size=(160, 120))
    results.wait_count(2)

    def published() -> dict[str, Any]:
        document = read_status(config.state_dir)
        return {} if document is None else document

    return daemon, runtime, published

def test_status_json_follows_what_adaptation_did_while_the_daemon_sleeps(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """Collecting and fitting happen while asleep, when nothing else publishes the status:
    status.json (what `rotwatchd status` and the web page read) shows the labels just
    collected and the fit's verdict, not the counts from before the daemon fell asleep."""
    _daemon, runtime, published = _attached_with_two_tagged(
        daemon_factory, tmp_path, {"after_idle": 0, "min_labels": 2})
    wait_until(lambda: published().get("counts", {}).get("done") == 2)
    assert published()["adapt"]["labels"] == {"exif": 0, "human": 0}
    runtime.worker.on_power_state(PowerState.ASLEEP)  # as the SleepController tells it
    wait_until(lambda: published()["adapt"].get("last_fit") is not None)
    adapt = published()["adapt"]
    assert adapt["labels"] == {"exif": 2, "human": 0}
    assert adapt["last_fit"]["reason"] == "not fitted: only 2 labelled photos (need 30)"


def test_an_output_folder_swapped_for_a_link_outside_is_not_read(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The subfolder holding an output is replaced by a symbolic link to a folder outside every
    configured one, holding a picture of the same name: nothing there is read (the output is
    opened folder by folder from the configured one, never following a link)."""
    config = fast_config(tmp_path)
    make_photo(tmp_path / "inbox" / "sub" / "tagged.jpg", exif_orientation=6, seed=1,
               size=(160, 120))
    make_photo(tmp_path / "inbox" / "kept.jpg", exif_orientation=6, seed=2, size=(160, 120))
    daemon, results = daemon_factory(config)
    results.wait_count(2)
    outputs = {Path(r.output).name: Path(r.output)
               for r in daemon.journal.labelled_after(0.0, 10) if r.output}
    sub = outputs["tagged.jpg"].parent
    assert sub.name == "sub"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (sub / "tagged.jpg").rename(outside / "tagged.jpg")  # the same picture, unchanged
    sub.rmdir()
    sub.symlink_to(outside, target_is_directory=True)
    adapter = Adapter(config.state_dir, daemon.journal, SETTINGS, ModelConfig(),
                      folders=label_folders(config))
    try:
        assert adapter.collect() == 1  # only kept.jpg, read where the daemon wrote it
    finally:
        adapter.close()


def test_a_reload_while_asleep_applies_the_new_after_idle_at_once(
        daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    """Asleep under a long ``adapt.after_idle``, the worker waits that long for its first look;
    a reload that shortens it (SIGHUP) makes it look again with the new setting, so the labels
    are collected now rather than when the old wait runs out."""
    daemon, runtime, published = _attached_with_two_tagged(
        daemon_factory, tmp_path, {"after_idle": "1h"})
    runtime.worker.on_power_state(PowerState.ASLEEP)  # the first look is an hour away
    assert runtime.worker.adapter.store.count() == 0
    daemon.reload(fast_config(tmp_path, adapt={"after_idle": 0}))
    assert wait_until(lambda: published().get("adapt", {}).get("labels")
                      == {"exif": 2, "human": 0})


def test_status_gives_the_last_fit_verdict_once_in_its_own_words(tmp_path: Path) -> None:
    """The verdict starts with what happened; status printed "last fit kept aside: kept aside:
    ..." for a head kept aside, and "last fit kept aside: not fitted: ..." when none was fitted
    at all."""
    for reason in ("kept aside: it adds nothing the shipped head decides; 40 held-out photos",
                   "not fitted: only 2 labelled photos (need 30)"):
        document = _adapt_status_with_last_fit(tmp_path / reason[:4], reason)
        lines = format_status({"adapt": document}).splitlines()
        assert f"  last fit: {reason}" in lines
        assert not any("kept aside: kept aside" in line or "kept aside: not fitted" in line
                       for line in lines)


def _adapt_status_with_last_fit(state_dir: Path, reason: str) -> dict[str, Any]:
    """The ``adapt`` status of a state_dir whose last fit was not accepted for ``reason``."""
    from rotwatchd.adapt.runtime import LAST_FIT, adapt_status

    adapt_dir(state_dir).mkdir(parents=True)
    (adapt_dir(state_dir) / LAST_FIT).write_text(json.dumps({"accepted": False,
                                                             "reason": reason}))
    return adapt_status(state_dir, True, {"exif": 2, "human": 0})
