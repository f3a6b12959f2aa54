"""Benchmark rotwatchd's sleep: what it costs asleep, and how fast it wakes.

Runs ``rotwatchd run`` (real model) in a subprocess the way systemd would (NOTIFY_SOCKET to a
socket owned here, WATCHDOG_USEC as in systemd/rotwatchd.service) against a fake cpufreq tree,
and measures:
  * asleep: CPU seconds (user+system, from /proc via psutil) and voluntary context switches
    (= wake-ups) of the daemon over ``--asleep`` seconds once it is asleep, and its RSS;
  * wake-up latency over ``--wakes`` wakes: each photo (no EXIF tag, so the model runs) is
    renamed into the inbox only after the daemon is asleep again. Reported from the daemon's
    own log: event -> inference start (includes the quiet period, ``--quiet``), and the wake
    itself (first event -> governors restored and model reloaded); plus rename -> output
    written as seen from outside.

Usage:  nice -n 15 .venv/bin/python bench/bench_power.py [--asleep 300] [--wakes 20]
        [--release-model] [--watchdog-usec 30000000] [--quiet 100ms] [--settle 2]
Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ORIGINAL = "schedutil"


def rotwatchd() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark condition not reached: {what}")
        tick.wait(0.005)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(np.ceil(fraction * len(ordered))) - 1))]


def drain(sock: socket.socket, into: list[bytes], stop: threading.Event) -> None:
    """Receive datagrams until *stop* is set."""
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            into.append(sock.recv(4096))
        except TimeoutError:
            continue


def wakeups(pid: int) -> int:
    """Voluntary context switches summed over every thread (psutil only reads the main one)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def make_tree(root: Path, cpus: int) -> list[Path]:
    files = []
    for i in range(cpus):
        policy = root / "cpufreq" / f"policy{i}"
        policy.mkdir(parents=True)
        (policy / "scaling_available_governors").write_text("powersave performance schedutil\n")
        (policy / "scaling_governor").write_text(ORIGINAL + "\n")
        files.append(policy / "scaling_governor")
    return files


def make_photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    image = Image.fromarray(np.kron(pixels, np.ones((10, 10, 1), np.uint8)), "RGB")
    image.rotate(90 * (seed % 4), expand=True).save(path, "JPEG", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asleep", type=float, default=300.0, help="seconds measured asleep")
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds after the first sleep before measuring")
    parser.add_argument("--idle-timeout", default="1s")
    parser.add_argument("--quiet", default="100ms", help="watch.quiet_period")
    parser.add_argument("--release-model", action="store_true")
    parser.add_argument("--watchdog-usec", type=int, default=30_000_000,
                        help="0 = no watchdog (as outside systemd)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp:
        work = Path(tmp)
        (work / "inbox").mkdir()
        governors = make_tree(work / "cpu", os.cpu_count() or 1)
        power = {"idle_timeout": args.idle_timeout, "cpufreq_path": str(work / "cpu"),
                 "release_model_when_idle": args.release_model}
        config = work / "rotwatchd.yaml"
        config.write_text(
            "inboxes: [{path: inbox, output: outbox}]\nstate_dir: state\n"
            f"watch: {{quiet_period: {args.quiet}}}\nmodel: {{min_confidence: 0}}\n"
            f"power: {json.dumps(power)}\n")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(work / "notify"))
        notify.settimeout(120)
        env = dict(os.environ, NOTIFY_SOCKET=str(work / "notify"))
        if args.watchdog_usec:
            env["WATCHDOG_USEC"] = str(args.watchdog_usec)
        log_path = work / "daemon.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([*rotwatchd(), "run", "-c", str(config)], cwd=work,
                                    stderr=log_file, stdout=subprocess.DEVNULL, env=env)
            try:
                while b"READY=1" not in notify.recv(4096):
                    pass
                # Read on like systemd does, so the daemon's datagrams never pile up.
                received: list[bytes] = []
                stop_reading = threading.Event()
                reader = threading.Thread(target=drain, args=(notify, received, stop_reading))
                reader.start()
                daemon = psutil.Process(proc.pid)

                def asleep() -> bool:
                    return all(f.read_text().strip() == "powersave" for f in governors)

                wait_for(asleep, 30, "first sleep")
                # Let the sleep transition finish (its log line, status.json, STATUS=) so the
                # measurement sees the steady asleep state only.
                threading.Event().wait(args.settle)
                rss_asleep_start = daemon.memory_info().rss
                cpu0 = daemon.cpu_times()
                ctx0 = wakeups(proc.pid)
                messages0 = len(received)
                start = time.monotonic()
                threading.Event().wait(args.asleep)
                elapsed = time.monotonic() - start
                asleep_messages = len(received) - messages0
                cpu1 = daemon.cpu_times()
                ctx1 = wakeups(proc.pid)
                still_asleep = asleep()
                cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
                switches = ctx1 - ctx0

                outside: list[float] = []
                for i in range(args.wakes):
                    wait_for(asleep, 30, "asleep before a wake")
                    staged = work / f"staged{i}.jpg"
                    make_photo(staged, i)
                    target = work / "outbox" / f"p{i}.jpg"
                    t0 = time.monotonic()
                    os.rename(staged, work / "inbox" / f"p{i}.jpg")
                    wait_for(target.is_file, 60, "output written")
                    outside.append(time.monotonic() - t0)
                    wait_for(lambda n=i + 1: log_path.read_text().count("woke up in") >= n,
                             30, "latency logged")
                rss_after = daemon.memory_info().rss
            finally:
                proc.terminate()
                code = proc.wait(60)
                stop_reading.set()
                if reader.is_alive():
                    reader.join()
                notify.close()
        text = log_path.read_text()
        pattern = r"woke up in ([\d.]+) ms \(event -> inference start; the wake itself ([\d.]+)"
        found = re.findall(pattern, text)
        latency = [float(a) for a, _ in found]
        transition = [float(b) for _, b in found]
        restored = all(f.read_text().strip() == ORIGINAL for f in governors)

    watchdog = f"{args.watchdog_usec / 2e6:g} s pings" if args.watchdog_usec else "off"
    model = "model released" if args.release_model else "model kept"
    state = "still asleep" if still_asleep else "WOKE during the measurement"
    print(f"rotwatchd asleep ({model}, watchdog {watchdog}, {os.cpu_count()} CPUs, {state})")
    print("| measure | value |\n|---|---|")
    print(f"| CPU time asleep over {elapsed:.0f} s | {cpu:.3f} s "
          f"({100 * cpu / elapsed:.4f} % of one core) |")
    print(f"| voluntary context switches asleep, all threads | {switches} "
          f"({switches / elapsed * 60:.1f}/min) |")
    print(f"| sd_notify datagrams received asleep | {asleep_messages} |")
    print(f"| RSS asleep | {rss_asleep_start / 2**20:.1f} MiB |")
    print(f"| RSS after {args.wakes} wakes | {rss_after / 2**20:.1f} MiB |")
    print(f"\nwake-up latency over {len(latency)} wakes (quiet period {args.quiet}):")
    print("| measure | p50 ms | p95 ms | max ms |\n|---|---|---|---|")
    for name, values in (("event -> inference start (daemon log)", latency),
                         ("wake itself: governors + model (daemon log)", transition),
                         ("rename -> upright copy written (outside)",
                          [v * 1000 for v in outside])):
        if values:
            print(f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.95):.1f} "
                  f"| {max(values):.1f} |")
    print(f"\nexit code {code}; governors restored on exit: {restored}")
    return 0 if code == 0 and restored and len(latency) == args.wakes else 1


if __name__ == "__main__":
    sys.exit(main())
