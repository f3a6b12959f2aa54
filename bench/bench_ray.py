"""Benchmark ``rotwatchd fix``: the local engine against ``--engine ray`` on a Ray cluster of 1
and of 2 nodes on this machine (``ray start``, one CPU each, so 1 or 2 classifier actors and
the reading/writing tasks beside them), on the same generated photos, real model.

Measures, per engine: wall time of the command and images per second; the fixed costs: for Ray
starting the cluster (``ray start`` of every node until all are up), and for each engine a
run's own start (process start, model load; for Ray also connecting and one model per
actor), taken as the wall time of the same command on 4 images, after a first such run
that warms the new cluster's worker processes (its time is printed too). Every output tree
is checked to be identical to the local one.

Photos are 2 MP JPEGs (1632x1224), not 12 MP: on a small shared machine 12 MP would take too
long; per-image costs (lossless rotation, decoding at model size) scale with the pixels.
``model.min_confidence: 0``: every image is decided and written (lossless rotation), none
is only copied to review.

Usage:  nice -n 10 .venv-ray/bin/python bench/bench_ray.py [--images 200]
Not a test: prints a table. Needs the [ray] extra; ends every Ray process it started.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ray_cluster import LocalRayCluster  # noqa: E402

SIZE = (1632, 1224)  # 2.0 MP


def make_images(folder: Path, count: int) -> None:
    """Photo-like noise over gradients, a quarter each turned 0/90/180/270 degrees."""
    rng = np.random.default_rng(0)
    w, h = SIZE
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3),
                                                                             np.float32)
    for i in range(count):
        noise = rng.normal(0, 20, size=(h // 8, w // 8, 3)).astype(np.float32)
        noise = np.kron(noise, np.ones((8, 8, 1), np.float32))
        pixels = np.clip(base * (0.5 + 0.1 * (i % 5)) + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB").rotate(90 * (i % 4), expand=True)
        sub = folder / f"roll{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        image.save(sub / f"photo{i:03d}.jpg", "JPEG", quality=90)


def rotwatchd() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


def timed_fix(args: list[str], env: dict[str, str] | None = None) -> float:
    began = time.monotonic()
    done = subprocess.run([*rotwatchd(), "fix", *args], capture_output=True, text=True,
                          env=env, timeout=3600)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"rotwatchd fix {' '.join(args)} failed:\n{done.stderr}")
    return seconds


def tree(outdir: Path) -> dict[str, str]:
    return {p.relative_to(outdir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(outdir.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rw-bench-ray-") as tmp:
        root = Path(tmp)
        src, small = root / "photos", root / "four"
        make_images(src, opts.images)
        make_images(small, 4)
        (root / "inbox").mkdir()
        config = root / "bench.yaml"
        config.write_text("inboxes: [{path: inbox, output: outbox}]\n"
                          "model: {min_confidence: 0}\n")
        rows: list[tuple[str, float | None, float | None, float]] = []
        start = timed_fix([str(small), "-o", str(root / "four0"), "-c", str(config)])
        local = timed_fix([str(src), "-o", str(root / "local"), "-c", str(config)])
        reference = tree(root / "local")
        rows.append(("local fix (1 process)", None, start, local))
        for nodes in (1, 2):
            with LocalRayCluster(workers=nodes - 1, num_cpus=1) as cluster:
                ray = ["--engine", "ray", "--address", cluster.address, "-c", str(config)]
                env = cluster.environment()
                first = timed_fix([str(small), "-o", str(root / f"first{nodes}"), *ray], env)
                start = timed_fix([str(small), "-o", str(root / f"four{nodes}"), *ray], env)
                print(f"ray, {nodes} node(s): first run on the new cluster (4 images) "
                      f"{first:.1f}s, the next {start:.1f}s", file=sys.stderr)
                seconds = timed_fix([str(src), "-o", str(root / f"ray{nodes}"), *ray], env)
                if tree(root / f"ray{nodes}") != reference:
                    raise SystemExit(f"ray with {nodes} node(s): outputs differ from local fix")
                rows.append((f"ray, {nodes} node(s) x 1 CPU", cluster.started_seconds, start,
                             seconds))
    print(f"{opts.images} JPEGs of {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.1f} MP), "
          "real model, every image written; outputs identical to the local fix's")
    print(f"{'engine':<28} {'cluster start':>13} {'run start':>10} {'wall':>8} {'images/s':>9} "
          f"{'w/o run start':>14}")
    for name, cluster_s, start_s, wall in rows:
        steady = opts.images / (wall - start_s) if start_s is not None and wall > start_s \
            else math.nan
        print(f"{name:<28} {_s(cluster_s):>13} {_s(start_s):>10} {wall:>7.1f}s "
              f"{opts.images / wall:>9.2f} {steady:>14.2f}")
    print("cluster start: ray start of every node until all are up (once per cluster); run "
          "start: the same command on 4 images (process start and model load; for Ray also "
          "connecting, worker processes, one model per actor), paid by every run")
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


if __name__ == "__main__":
    sys.exit(main())
