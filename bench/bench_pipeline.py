"""Benchmark rotwatchd's whole pipeline against the tools and the floor, in CPU seconds.

One run prints:
  * EXIF path: ``rotwatchd fix`` on camera JPEGs tagged Orientation 6/3/8 against
    ``cp`` + ``exiftran -ai`` and ``cp`` + ``jhead -autorot`` (a missing tool: one line, skipped);
  * model path: ``rotwatchd fix`` on the same photos with their pixels turned and no tag
    (``model.min_confidence: 0``) against the floor: a DCT-scaled decode (``djpeg -scale 1/8``)
    plus ``jpegtran -perfect`` for each photo rotwatchd turned (a copy for one it kept), with
    and without rotwatchd's model load and inference (measured in-process on the same files);
  * polling: a minute of passes over 10,000 finished files, rotwatchd's against watchdog's;
  * the daemon: throughput with 1 and 2 workers, resident memory (RSS) idle after start and
    after every ``--step`` files up to ``--files`` (outputs removed as they come, so the disk
    does not fill), and the time from close-after-write to the upright copy (p50, p90).

Usage:  nice .venv/bin/python bench/bench_pipeline.py [--photos 8] [--files 1000] [--step 100]
CPU seconds (user + system, children included) are less disturbed by other load than wall
time; throughput and latency are wall time, so run it on a quiet machine. Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from bench_daemon import finished, outcome_counts, start_daemon, stop, wait_for
from bench_writer import photo_like
from PIL import Image

SIZE = (4032, 3024)  # a 12 MP camera photo, MCU-aligned (a lossless turn is possible)
ORIENTATIONS = (6, 3, 8)
TURN_FOR = {6: Image.Transpose.ROTATE_90, 3: Image.Transpose.ROTATE_180,
            8: Image.Transpose.ROTATE_270}  # upright -> stored pixels for that tag


def make_photos(folder: Path, count: int, *, tagged: bool,
                size: tuple[int, int] = SIZE) -> list[Path]:
    """``count`` photo-like 12 MP JPEGs (q92, 4:2:0, standard Huffman tables like most
    cameras): tagged with Orientation 6/3/8, or with their pixels turned that way and no tag."""
    folder.mkdir(parents=True, exist_ok=True)
    base = photo_like(*size)
    paths = []
    for i in range(count):
        orientation = ORIENTATIONS[i % 3]
        upright = Image.fromarray(np.roll(base, 131 * i, axis=1))
        stored = upright.transpose(TURN_FOR[orientation])
        exif = Image.Exif()
        exif[0x010F] = "Camera"
        if tagged:
            exif[0x0112] = orientation
        path = folder / f"IMG_{i:04d}.jpg"
        stored.save(path, "JPEG", quality=92, subsampling=2, exif=exif.tobytes())
        paths.append(path)
    return paths


def cpu_of(command: list[str] | str, *, env: dict[str, str] | None = None,
           stderr: Path | None = None) -> float:
    """CPU seconds (user + system) of ``command`` and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    err = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115
    try:
        subprocess.run(command, shell=isinstance(command, str), check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=err)
    finally:
        if stderr:
            err.close()  # type: ignore[union-attr]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def tool_env() -> dict[str, str]:
    # bytecode as an installed package has it (pip compiles it): a PYTHONDONTWRITEBYTECODE
    # environment would otherwise charge every run with compiling rotwatchd
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def rotwatchd_fix(photos: Path, out: Path, config: Path | None, log: Path | None = None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "rotwatchd", "fix", str(photos), "-o", str(out)]
    if config is not None:
        cmd += ["-c", str(config)]
    return cpu_of(cmd, env=tool_env(), stderr=log)


def in_place_tool(tool: str, args: str, photos: list[Path], scratch: Path) -> float | None:
    if shutil.which(tool) is None:
        print(f"{tool} not installed: its row is skipped", file=sys.stderr)
        return None

    def run() -> float:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        files = " ".join(str(p) for p in photos)
        return cpu_of(f"cp {files} {scratch}/ && {tool} {args} {scratch}/*.jpg")
    return run()


def exif_rows(tagged: list[Path], work: Path, repeats: int) -> list[tuple[str, float]]:
    rows = [("rotwatchd fix", best_of(repeats, lambda: rotwatchd_fix(
        tagged[0].parent, work / "out-exif", None)))]
    for tool, args in (("exiftran", "-ai"), ("jhead", "-autorot")):
        secs = [in_place_tool(tool, args, tagged, work / f"{tool}-out") for _ in range(repeats)]
        if secs[0] is not None:
            rows.append((f"cp + {tool} {args}", min(s for s in secs if s is not None)))
    return rows


def decisions(log: Path) -> dict[str, int]:
    """File name -> clockwise correction rotwatchd fix applied, from its progress lines."""
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r" (\S+\.jpg): (?:rotate|keep) (\d+) ->", line)
        if found:
            out[Path(found.group(1)).name] = int(found.group(2))
    return out


def floor_cpu(photos: list[Path], turns: dict[str, int], out: Path) -> float:
    out.mkdir(exist_ok=True)
    total = 0.0
    for path in photos:
        total += cpu_of(["djpeg", "-scale", "1/8", "-outfile", os.devnull, str(path)])
        turn = turns.get(path.name, 0)
        if turn:
            total += cpu_of(["jpegtran", "-perfect", "-copy", "all", "-rotate", str(turn),
                             "-outfile", str(out / path.name), str(path)])
        else:
            total += cpu_of(["cp", str(path), str(out / path.name)])
    return total


_MODEL_COST = """
import sys, time
from pathlib import Path
from rotwatchd.formats.image import load_upright
from rotwatchd.service.processor import MODEL_INPUT_SIDE
images = [load_upright(Path(p), MODEL_INPUT_SIDE) for p in sys.argv[1:]]
start = time.process_time()
from rotwatchd.config import ModelConfig
from rotwatchd.service.daemon import load_configured_classifier
classifier = load_configured_classifier(ModelConfig())
loaded = time.process_time()
for image in images:
    classifier.predict(image)
print(loaded - start, time.process_time() - loaded)
"""


def inference_cpu(photos: list[Path]) -> tuple[float, float]:
    """(model load with its runtime's imports, inference) CPU seconds for the photos, in a
    fresh interpreter (their model input is decoded outside the measure: that is rotwatchd's
    own share, like the floor's decode)."""
    done = subprocess.run([sys.executable, "-c", _MODEL_COST, *map(str, photos)], check=True,
                          capture_output=True, text=True, env=tool_env())
    load, infer = (float(v) for v in done.stdout.split())
    return load, infer


def model_rows(turned: list[Path], work: Path, repeats: int) -> list[tuple[str, float]]:
    config = work / "model.yaml"
    (work / "inbox").mkdir(exist_ok=True)  # the config's default inbox must exist
    config.write_text("model: {min_confidence: 0}\n")
    log = work / "fix.log"
    total = best_of(repeats, lambda: rotwatchd_fix(turned[0].parent, work / "out-model",
                                                    config, log))
    load, infer = inference_cpu(turned)
    turns = decisions(log)
    floor = best_of(repeats, lambda: floor_cpu(turned, turns, work / "floor-out"))
    kept = sum(1 for t in turns.values() if t == 0)
    print(f"model path: rotwatchd turned {len(turns) - kept}, kept {kept} of {len(turned)}",
          file=sys.stderr)
    return [("rotwatchd fix", total), ("  less model load + inference", total - load - infer),
            ("floor: djpeg 1/8 + jpegtran -perfect", floor)]


def polling_cpu(folder: Path, files: int, passes: int = 60) -> tuple[float, float]:
    """CPU seconds of ``passes`` polls (a minute at the default 1 s interval) of a folder tree
    holding ``files`` finished files: rotwatchd's PollingWatch, and watchdog's snapshot (what
    its PollingObserver takes every pass), estimated from 5 passes."""
    from watchdog.utils.dirsnapshot import DirectorySnapshot

    from rotwatchd.watch.polling import PollingWatch

    for i in range(files):
        sub = folder / f"d{i // 1000}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"IMG_{i:05d}.jpg").write_bytes(b"x")
    for sub in (folder, *folder.iterdir()):  # finished long ago
        st = sub.stat()
        os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))

    class Ignore:
        def dispatch(self, event: object) -> None:
            pass

    watch = PollingWatch(1.0)
    watch.schedule(Ignore(), str(folder), recursive=True)
    start = time.process_time()
    for _ in range(passes):
        watch.poll()
    ours = time.process_time() - start
    start = time.process_time()
    for _ in range(5):
        DirectorySnapshot(str(folder), recursive=True)
    return ours, (time.process_time() - start) * passes / 5


# --- the daemon --------------------------------------------------------------------------

def rss_mib(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def feed(root: Path, sources: list[Path], count: int, start: int, step: int,
         proc: psutil.Process, samples: dict[int, float]) -> None:
    """Rename ``count`` copies of ``sources`` into the inbox, ``step`` at a time; after each
    step wait until all are journaled, remove the outputs, record the RSS."""
    staging, inbox, outbox = root / "staging", root / "inbox", root / "outbox"
    staging.mkdir(exist_ok=True)
    done = start
    while done < start + count:
        batch = min(step, start + count - done)
        for i in range(done, done + batch):
            copy = staging / f"f{i:05d}.jpg"
            shutil.copyfile(sources[i % len(sources)], copy)
            os.rename(copy, inbox / copy.name)
        done += batch
        wait_for(lambda d=done: finished(root / "state") >= d, 3600)
        for path in outbox.glob("*.jpg"):
            path.unlink()
        for path in inbox.glob("*.jpg"):
            path.unlink()
        samples[done] = rss_mib(proc)


def daemon_run(sources: list[Path], workers: int, files: int, step: int, scratch: Path,
               web: bool) -> tuple[float, float, dict[int, float], list[float]]:
    """(images/s over the first batch, RSS idle after start, RSS after N files, latencies).
    Default settings (quiet period 2 s), the web page only with ``web``."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        root = Path(tmp)
        proc, _ = start_daemon(root, workers, settings="" if web else "web: {listen: null}\n")
        process = psutil.Process(proc.pid)
        threading.Event().wait(1.0)
        idle = rss_mib(process)
        samples: dict[int, float] = {}
        first = min(files, step)
        started = time.monotonic()
        feed(root, sources, first, 0, first, process, samples)
        rate = first / (time.monotonic() - started)
        if files > first:
            feed(root, sources, files - first, first, step, process, samples)
        latencies = latency(root, sources[0], 9, process)
        counts = outcome_counts(root / "state")
        stop(proc)
    if counts.get("done", 0) < files:
        raise RuntimeError(f"not every file was done: {counts}")
    return rate, idle, samples, latencies


def latency(root: Path, source: Path, count: int, process: psutil.Process) -> list[float]:
    """Seconds from close-after-write in the inbox to the upright copy in the outbox."""
    data = source.read_bytes()
    out = []
    for i in range(count):
        name = f"lat{i}.jpg"
        with open(root / "inbox" / name, "wb") as handle:
            handle.write(data)
        closed = time.monotonic()
        wait_for(lambda n=name: (root / "outbox" / n).exists(), 120)
        out.append(time.monotonic() - closed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8, help="photos per CPU comparison")
    parser.add_argument("--files", type=int, default=1000, help="files fed to the daemon")
    parser.add_argument("--step", type=int, default=100, help="RSS sampled every STEP files")
    parser.add_argument("--repeats", type=int, default=3, help="best of REPEATS CPU runs")
    parser.add_argument("--no-daemon", action="store_true", help="CPU comparisons only")
    parser.add_argument("--web", action="store_true",
                        help="daemon with its web page (web.listen default; ~12 MiB more)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rotwatchd-pipeline-") as tmp:
        work = Path(tmp)
        tagged = make_photos(work / "tagged", args.photos, tagged=True)
        turned = make_photos(work / "turned", args.photos, tagged=False)
        exif = exif_rows(tagged, work, args.repeats)
        model = model_rows(turned, work, args.repeats)
        polled = polling_cpu(work / "polled", 10_000)
        runs = {}
        if not args.no_daemon:
            # what a phone folder holds: aligned photos and a quarter whose 3000-pixel side is
            # not a multiple of the MCU (turned by a re-encode, the heaviest path)
            sources = turned + make_photos(work / "partial", max(1, args.photos // 3),
                                           tagged=False, size=(4000, 3000))
            for workers in (1, 2):
                print(f"daemon, {workers} worker(s), {args.files} files", file=sys.stderr)
                runs[workers] = daemon_run(sources, workers, args.files, args.step, work,
                                           args.web)
    print(f"\nrotwatchd pipeline benchmark: {args.photos} photos {SIZE[0]}x{SIZE[1]}, "
          f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
    for title, rows, ref in (("EXIF path (tags 6/3/8)", exif, 1),
                             ("model path (turned pixels, no tag)", model, 2)):
        print(f"\n{title}{'':<21} {'CPU s':>6} {'ratio':>6}")
        reference = rows[ref][1]
        for name, secs in rows:
            print(f"  {name:<40} {secs:6.2f} {secs / reference:6.2f}")
        print(f"  (ratio: against {rows[ref][0]})")
    print(f"\npolling 10,000 finished files for a minute at the default 1 s interval: rotwatchd "
          f"{polled[0]:.3f} CPU s, watchdog's PollingObserver ~{polled[1]:.1f} CPU s")
    if runs:
        page = "with" if args.web else "without"
        print(f"\ndaemon ({args.files} files, outputs removed as they come, {page} the web page)")
        print(f"  {'workers':>7} {'images/s':>9} {'RSS idle':>9} {'RSS after N files (MiB)'}")
        for workers, (rate, idle, samples, _) in runs.items():
            shown = "  ".join(f"{n}:{mib:.0f}" for n, mib in samples.items())
            print(f"  {workers:>7} {rate:9.2f} {idle:9.0f}  {shown}")
        print(f"  2 workers / 1 worker throughput: {runs[2][0] / runs[1][0]:.2f}")
        lat = runs[1][3]
        print(f"  close-after-write -> output: p50 {statistics.median(lat):.2f} s, "
              f"max {max(lat):.2f} s ({len(lat)} files, 1 worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
