"""The steps of ``fix --engine ray``, one function (or class) per pipeline stage, working on
batches of rows (``dict[str, numpy array]``, Ray Data's numpy batch format).

Nothing here imports Ray: Ray Data runs these in its worker processes, possibly on other
machines, where they import this module by name. Each stage runs the local ``fix``'s own
code (rotwatchd.fix.oneshot.look, rotwatchd.service.decision.decide,
rotwatchd.fix.oneshot.fix_file); only the model's answer travels between processes:

1. :func:`look_batch` (task): stat and hash each file, inspect it and, only when the decision
   needs the model, decode it at model size. The facts go on as JSON, the pixels as bytes.
2. :class:`ClassifyBatch` (actor, one classifier each, loaded once): predict the images.
3. :func:`write_batch` (task): decide and carry it out exactly as the local ``fix`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rotwatchd.config import LimitsConfig, ModelConfig, OutputConfig
from rotwatchd.fix.oneshot import fix_file, look
from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.model.base import OrientationClassifier, Prediction
from rotwatchd.service.decision import Decision, Facts, decide

Batch = dict[str, Any]  # column name -> numpy array, one entry per file

#: Stands for the model's answer while the image travels to a classifier (never decided on).
_PENDING = Prediction(correction=0, confidence=0.0, probabilities=(0.25, 0.25, 0.25, 0.25))


class _ImageCatcher:
    """A ModelSource whose classifier keeps the image it is asked about instead of answering:
    :func:`rotwatchd.fix.oneshot.look` thus decides, as for the local ``fix``, whether the model
    is needed and decodes the image at model size, and the answer comes later, elsewhere."""

    def __init__(self) -> None:
        self.image: Image.Image | None = None

    @contextlib.contextmanager
    def lease(self) -> Iterator[OrientationClassifier]:
        yield self

    def predict(self, image: Image.Image) -> Prediction:
        self.image = image
        return _PENDING

    def close(self) -> None:
        pass


def facts_to_json(facts: Facts) -> str:
    return json.dumps(asdict(facts))


def facts_from_json(text: str) -> Facts:
    data = json.loads(text)
    data["prediction"] = _prediction(data["prediction"])
    return Facts(**data)


def _prediction(data: dict[str, Any] | None) -> Prediction | None:
    if data is None:
        return None
    probabilities = tuple(data["probabilities"])
    assert len(probabilities) == 4
    return Prediction(data["correction"], data["confidence"],
                      (probabilities[0], probabilities[1], probabilities[2], probabilities[3]),
                      tuple((str(name), float(value)) for name, value in data["cues"]))


def file_stat(path: Path) -> tuple[int, int, str]:
    """(size, mtime_ns, sha256) of ``path``; (0, 0, "") for a link, a special file or one
    that cannot be read (the later steps say why)."""
    if path.is_symlink() or not path.is_file():  # never open a link, nor block on a FIFO
        return 0, 0, ""
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return 0, 0, ""
    return st.st_size, st.st_mtime_ns, digest


def look_batch(batch: Batch, *, limits: LimitsConfig) -> Batch:
    """Stage 1. In: ``source``, ``relative``. Out: also ``size``, ``mtime_ns``, ``sha256``,
    ``facts`` (JSON), ``error`` (why the file could not be read, or ""), and ``pixels``,
    ``width``, ``height`` (the image at model size as RGB bytes; empty when the model is not
    needed)."""
    columns: dict[str, list[Any]] = {name: [] for name in (
        "size", "mtime_ns", "sha256", "facts", "error", "pixels", "width", "height")}
    for source in batch["source"]:
        path = Path(str(source))
        size, mtime_ns, sha256 = file_stat(path)
        catcher = _ImageCatcher()
        error = ""
        try:
            facts = look(path, catcher, limits)
        except UnsupportedFormat as exc:  # found only when decoding for the model
            facts = Facts(unsupported=exc.format)
        except (ImageProblem, OSError) as exc:
            facts, error = Facts(), str(exc)
        image = catcher.image
        for name, value in (("size", size), ("mtime_ns", mtime_ns), ("sha256", sha256),
                            ("facts", facts_to_json(facts)), ("error", error),
                            ("pixels", image.tobytes() if image is not None else b""),
                            ("width", image.width if image is not None else 0),
                            ("height", image.height if image is not None else 0)):
            columns[name].append(value)
    return {**batch, **_arrays(columns)}


class ClassifyBatch:
    """Stage 2, a Ray Data actor: loads the configured classifier once, then predicts every
    image of each batch it is given. In: ``facts``, ``pixels``, ``width``, ``height``. Out:
    ``facts`` with the prediction filled in; the pixels are dropped. Raises ModelError when
    the model cannot load."""

    def __init__(self, model: ModelConfig) -> None:
        from rotwatchd.service.daemon import load_configured_classifier

        self.classifier = load_configured_classifier(model)

    def __call__(self, batch: Batch) -> Batch:
        facts_out = []
        for text, pixels, width, height in zip(batch["facts"], batch["pixels"], batch["width"],
                                               batch["height"], strict=True):
            if len(pixels) == 0:
                facts_out.append(str(text))
                continue
            image = Image.frombytes("RGB", (int(width), int(height)), bytes(pixels))
            facts = replace(facts_from_json(str(text)),
                            prediction=self.classifier.predict(image))
            facts_out.append(facts_to_json(facts))
        rest = {k: v for k, v in batch.items() if k not in ("pixels", "width", "height")}
        return {**rest, "facts": _arrays({"facts": facts_out})["facts"]}


def write_batch(batch: Batch, *, outdir: str, min_confidence: float, limits: LimitsConfig,
                output: OutputConfig) -> Batch:
    """Stage 3. Decide each file and carry it out with rotwatchd.fix.oneshot.fix_file under
    ``outdir``. Out: ``source``, ``relative``, ``size``, ``mtime_ns``, ``sha256``,
    ``outcome``, ``message``, ``output`` ("" for none), ``action``, ``correction`` (-1 for
    none), ``confidence`` (NaN for none), ``decided_by``."""
    columns: dict[str, list[Any]] = {name: [] for name in (
        "outcome", "message", "output", "action", "correction", "confidence", "decided_by")}
    for source, relative, text, error in zip(batch["source"], batch["relative"],
                                             batch["facts"], batch["error"], strict=True):
        facts = facts_from_json(str(text))

        def decision_of(path: Path, facts: Facts = facts, error: str = str(error)) -> Decision:
            if error:
                raise OSError(error)
            return decide(facts, min_confidence=min_confidence, max_pixels=limits.max_pixels)

        done = fix_file(Path(str(source)), Path(str(relative)), Path(outdir), decision_of,
                        limits=limits, output=output)
        decision = done.decision
        for name, value in (
                ("outcome", done.kind), ("message", done.message),
                ("output", str(done.output) if done.output is not None else ""),
                ("action", decision.action if decision is not None else ""),
                ("correction", _or(decision.correction if decision else None, -1)),
                ("confidence", _or(decision.confidence if decision else None, math.nan)),
                ("decided_by", (decision.source or "") if decision else "")):
            columns[name].append(value)
    keep = ("source", "relative", "size", "mtime_ns", "sha256")
    return {**{k: batch[k] for k in keep}, **_arrays(columns)}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _arrays(columns: dict[str, list[Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Lists -> numpy columns; text and bytes as object arrays (no fixed-width padding)."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, values in columns.items():
        if values and isinstance(values[0], str | bytes):
            column = np.empty(len(values), dtype=object)
            column[:] = values
            out[name] = column
        else:
            out[name] = np.asarray(values)
    return out
