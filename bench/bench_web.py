"""Benchmark what the web page costs the daemon while nobody is looking.

Runs ``rotwatchd run`` (real model) twice, with ``web.listen: null`` and with the page on, the
same work in both (one photo sent to review; with the page, the review and status pages,
/metrics and a thumbnail fetched once), waits until the daemon is asleep, then measures over
``--idle`` seconds: CPU seconds, context switches of all its threads (each one a wake-up) and
resident memory (RSS). ``--servers`` also measures idle wake-ups of candidate HTTP servers in
a bare interpreter: the standard library's ``serve_forever`` (polls every 0.5 s), aiohttp on
an asyncio loop (when installed), and rotwatchd's blocking accept loop.

Usage:  nice -n 15 .venv/bin/python bench/bench_web.py [--idle 60] [--servers]
Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.request
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def rotwatchd() -> list[str]:
    script = Path(sys.executable).parent / "rotwatchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotwatchd"]


def wait_for(predicate: object, timeout: float) -> None:
    tick = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():  # type: ignore[operator]
            return
        tick.wait(0.05)
    raise TimeoutError("benchmark condition not reached")


def switches(pid: int) -> int:
    """Context switches (voluntary and not) of every thread of ``pid`` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:  # a thread that just ended
            continue
        total += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def power_state(state: Path) -> str | None:
    try:
        return str(json.loads((state / "status.json").read_text())["power"]["state"])
    except (OSError, ValueError, KeyError):
        return None


def measure_daemon(scratch: Path, web: bool, seconds: float) -> dict[str, float]:
    root = scratch / ("web" if web else "noweb")
    (root / "inbox").mkdir(parents=True)
    port = free_port()
    listen = f"127.0.0.1:{port}" if web else "null"
    (root / "rotwatchd.yaml").write_text(textwrap.dedent(f"""\
        inboxes: [{{path: inbox, output: outbox}}]
        state_dir: state
        watch: {{quiet_period: 200ms}}
        model: {{min_confidence: 1}}
        power: {{idle_timeout: 3s}}
        web: {{listen: {listen}}}
        """))
    log = root / "daemon.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*rotwatchd(), "run", "-c", str(root / "rotwatchd.yaml")],
                                stderr=err, cwd=root)
    try:
        wait_for(lambda: "running:" in log.read_text(errors="replace") or
                 proc.poll() is not None, 120)
        if proc.poll() is not None:
            raise RuntimeError(f"daemon failed to start:\n{log.read_text()}")
        photo = Image.new("RGB", (1600, 1200), (90, 120, 160))
        photo.save(root / "photo.jpg.part", "JPEG", quality=90)
        os.rename(root / "photo.jpg.part", root / "inbox" / "photo.jpg")
        wait_for(lambda: any((root / "review").glob("*.jpg")), 120)
        if web:
            for path in ("review", "status", "metrics", "review/1/thumb"):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=30) as r:
                    r.read()
        wait_for(lambda: power_state(root / "state") == "asleep", 120)
        process = psutil.Process(proc.pid)
        threading.Event().wait(1)  # the status write that follows falling asleep
        cpu0, sw0 = process.cpu_times(), switches(proc.pid)
        threading.Event().wait(seconds)
        cpu1, sw1 = process.cpu_times(), switches(proc.pid)
        rss = process.memory_info().rss / 2**20
        threads = process.num_threads()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"cpu": cpu, "switches": sw1 - sw0, "rss": rss, "threads": threads}


SERVER_PROBE = """
import os, sys, threading
kind = sys.argv[1]
if kind == "socketserver":
    from wsgiref.simple_server import make_server
    server = make_server("127.0.0.1", 0, lambda environ, start: [])
    threading.Thread(target=server.serve_forever, daemon=True).start()
elif kind == "aiohttp":
    import asyncio
    from aiohttp import web
    async def serve():
        runner = web.AppRunner(web.Application())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await asyncio.Event().wait()
    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
else:
    from rotwatchd.web.server import WebServer
    WebServer(lambda environ, start: [], "127.0.0.1", 0).start()
print("ready", flush=True)
sys.stdin.read()
"""


def measure_server(kind: str, seconds: float) -> int | None:
    """Wake-ups (context switches) of an idle server of ``kind`` over ``seconds``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_PROBE, kind], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            return None  # not installed
        threading.Event().wait(1)
        before = switches(proc.pid)
        threading.Event().wait(seconds)
        return switches(proc.pid) - before
    finally:
        proc.stdin.close()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measured idle")
    parser.add_argument("--servers", action="store_true",
                        help="also measure idle wake-ups of candidate HTTP servers")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="rotwatchd-bench-web-") as tmp:
        for web in (False, True):
            print(f"daemon {'with' if web else 'without'} the page: {args.idle:.0f} s idle",
                  file=sys.stderr)
            rows[web] = measure_daemon(Path(tmp), web, args.idle)
    print(f"\nidle daemon over {args.idle:.0f} s, asleep, nobody looking ({os.cpu_count()} CPUs, "
          f"load avg {os.getloadavg()[0]:.1f})")
    print(f"{'web page':>9} {'CPU s':>7} {'% core':>7} {'wake-ups':>9} {'threads':>8} "
          f"{'RSS MiB':>8}")
    for web, row in rows.items():
        print(f"{'on' if web else 'off':>9} {row['cpu']:>7.3f} "
              f"{100 * row['cpu'] / args.idle:>7.3f} {row['switches']:>9.0f} "
              f"{row['threads']:>8.0f} {row['rss']:>8.1f}")
    print(f"the page costs {rows[True]['rss'] - rows[False]['rss']:+.1f} MiB RSS")
    if args.servers:
        print(f"\nidle HTTP servers alone, wake-ups over {args.idle:.0f} s:")
        for kind in ("socketserver", "aiohttp", "rotwatchd"):
            count = measure_server(kind, args.idle)
            print(f"  {kind:<13} {'not installed' if count is None else count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
