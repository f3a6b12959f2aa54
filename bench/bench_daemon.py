"""Benchmark the daemon as a user runs it (``rotwatchd run`` in a subprocess, real model).

Measures, for 12-megapixel JPEGs renamed into the inbox all at once:
  * end-to-end throughput (first rename -> last upright copy journaled), 1 and 2 workers;
  * CPU seconds the idle daemon uses over ``--idle`` seconds (goal: ~0, no polling loops);
  * resident memory (RSS) idle after start, after the batch, and once the daemon has fallen
    asleep after it (the free heap handed back to the system, ``rotwatchd/power/heap.py``).

Usage:  nice -n 15 .venv/bin/python bench/bench_daemon.py [--images 16] [--idle 60]
Not a test: prints a table. Needs the shipped model (``rotwatchd check`` must work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image


def make_images(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Photo-like noise + gradients at ``size``; a quarter each of 0/90/180/270 turns."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    paths = []
    for i in range(count):
        noise = rng.normal(0, 20, size=(h // 8, w // 8, 3)).astype(np.float32)
        noise = np.kron(noise, np.ones((8, 8, 1), np.float32))
        pixels = np.clip(base * (0.5 + 0.1 * (i % 5)) + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB").rotate(90 * (i % 4), expand=True)
        path = folder / f"photo{i:03d}.jpg"
        image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def rotwatchd() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        tick.wait(0.02)


def outcome_counts(state: Path) -> dict[str, int]:
    """Journal rows per outcome (the daemon writes, we only read: WAL allows it)."""
    db = state / "journal.sqlite3"
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT outcome, count(*) FROM files GROUP BY outcome").fetchall()
    finally:
        conn.close()
    return {str(k): int(v) for k, v in rows}


def finished(state: Path) -> int:
    return sum(n for k, n in outcome_counts(state).items() if k != "in-progress")


def start_daemon(root: Path, workers: int, *, settings: str = "watch: {quiet_period: 200ms}\n"
                 ) -> tuple[subprocess.Popen[bytes], Path]:
    """``rotwatchd run`` on ``root``/inbox with ``workers`` and further YAML ``settings``."""
    (root / "inbox").mkdir(parents=True)
    config = root / "rotwatchd.yaml"
    config.write_text(f"inboxes: [{{path: inbox, output: outbox}}]\nstate_dir: state\n"
                      f"workers: {workers}\nmodel: {{min_confidence: 0}}\n{settings}")
    log = root / "daemon.log"
    proc = subprocess.Popen([*rotwatchd(), "run", "-c", str(config)],
                            stderr=open(log, "wb"), cwd=root)  # noqa: SIM115
    wait_for(lambda: "running:" in log.read_text(errors="replace") or proc.poll() is not None,
             120)
    if proc.poll() is not None:
        raise RuntimeError(f"daemon failed to start:\n{log.read_text()}")
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(120)


def throughput(images: list[Path], workers: int) -> tuple[float, float, float, float]:
    """(images/s, RSS MiB idle after start, RSS MiB after the batch, RSS MiB once the daemon
    has fallen asleep after the batch: ``power.idle_timeout`` 2 s here)."""
    with tempfile.TemporaryDirectory(dir=images[0].parent.parent) as tmp:
        root = Path(tmp)
        proc, log = start_daemon(root, workers, settings="watch: {quiet_period: 200ms}\n"
                                                         "power: {idle_timeout: 2s}\n")
        process = psutil.Process(proc.pid)
        rss_idle = process.memory_info().rss / 2**20
        staging = root / "staging"
        staging.mkdir()
        copies = [Path(shutil.copy(p, staging / p.name)) for p in images]
        started = time.monotonic()
        for path in copies:  # a rename is instant: measures the daemon, not the copy
            os.rename(path, root / "inbox" / path.name)
        wait_for(lambda: finished(root / "state") >= len(images), 1200)
        elapsed = time.monotonic() - started
        counts = outcome_counts(root / "state")
        if counts.get("done") != len(images):
            raise RuntimeError(f"not every image was done: {counts}")
        rss_busy = process.memory_info().rss / 2**20
        wait_for(lambda: "sleeping" in log.read_text(errors="replace"), 120)
        rss_asleep = process.memory_info().rss / 2**20
        stop(proc)
    return len(images) / elapsed, rss_idle, rss_busy, rss_asleep


def idle_cpu(scratch: Path, seconds: float) -> tuple[float, float]:
    """(CPU seconds used over ``seconds`` of idleness, RSS MiB) for a started daemon."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        proc, _ = start_daemon(Path(tmp), 1)
        process = psutil.Process(proc.pid)
        threading.Event().wait(2)  # let start-up work (rescan, status write) finish
        before = process.cpu_times()
        threading.Event().wait(seconds)
        after = process.cpu_times()
        rss = process.memory_info().rss / 2**20
        stop(proc)
    used = (after.user - before.user) + (after.system - before.system)
    return used, rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--size", default="4000x3000", help="WxH of the test JPEGs (12 MP)")
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="rotwatchd-bench-") as tmp:
        scratch = Path(tmp)
        t0 = time.monotonic()
        images = make_images(scratch / "images", args.images, (w, h))
        print(f"made {len(images)} {w}x{h} JPEGs in {time.monotonic() - t0:.1f}s "
              f"({images[0].stat().st_size / 2**20:.1f} MiB each)", file=sys.stderr)
        rows = []
        for workers in (1, 2):
            rate, rss_idle, rss_busy, rss_asleep = throughput(images, workers)
            print(f"{workers} worker(s): {rate:.2f} images/s", file=sys.stderr)
            rows.append((workers, rate, rss_idle, rss_busy, rss_asleep))
        print(f"measuring the idle daemon for {args.idle:.0f} s", file=sys.stderr)
        cpu, rss = idle_cpu(scratch, args.idle)
    cpus = os.cpu_count()
    print(f"\nrotwatchd daemon benchmark ({w}x{h} JPEG, {args.images} images, {cpus} CPUs, "
          f"load avg {os.getloadavg()[0]:.1f})")
    print(f"{'workers':>8} {'images/s':>9} {'s/image':>8} {'RSS idle MiB':>13} "
          f"{'RSS busy MiB':>13} {'RSS asleep MiB':>15}")
    for workers, rate, rss_idle, rss_busy, rss_asleep in rows:
        print(f"{workers:>8} {rate:>9.2f} {1 / rate:>8.2f} {rss_idle:>13.0f} {rss_busy:>13.0f} "
              f"{rss_asleep:>15.0f}")
    print(f"\nidle daemon: {cpu:.3f} CPU s over {args.idle:.0f} s "
          f"({100 * cpu / args.idle:.3f}% of one core), RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
