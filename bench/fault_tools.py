"""The harness behind ``bench/faults.py``: inputs with known answers, a daemon subprocess, an
inotify trap for "the moment X happens", and the judge that counts what went wrong.

Every input is remembered with its bytes and, for photos, the upright pixels a correct output
must show. Judging walks the inbox and every result folder (outbox, review, quarantine) by
bytes, never following symlinks: an input is *present* when its bytes (any folder) or its
upright pixels (outbox) are found; *lost* when it is nowhere; *pending* when only its original
is left in the inbox; *refused* when only its original is left in the inbox because its place
in the outbox lies under a symlinked folder, which the daemon must not write through (it
refuses and journals the file as an error); *duplicated* when it has more than one result.
An output matching no input is *damaged*. A folder ``outside`` holds a secret photo whose
bytes or pixels must never reach a result folder, and must itself stay unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import select
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
FINAL = ("done", "review", "quarantined")
# Mean absolute difference of the cell colour means, 0..255: one JPEG re-encode of a test photo
# gives <= 7, a wrong turn or another photo >= 50.
PIXEL_TOLERANCE = 20.0


def pause(seconds: float) -> None:
    """Wait without a bare sleep (the script also runs timers from threads)."""
    threading.Event().wait(seconds)


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause(step)
    return True


# --- inputs with known answers ------------------------------------------------------------


def _jpeg(pixels: np.ndarray, orientation: int) -> bytes:
    stored = Image.fromarray(pixels, "RGB")
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
            8: Image.Transpose.ROTATE_270}[orientation]
    stored = stored.transpose(turn)  # the camera stored it turned; the tag says how to undo
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def upright_of(data: bytes) -> np.ndarray | None:
    """Decoded pixels as a viewer shows them (EXIF applied), None when not decodable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Exception:  # noqa: BLE001 - any decoder failure means "not a picture"
        return None


GRID = (8, 12)  # rows, columns of the colour cells every test photo is made of


def fingerprint(pixels: np.ndarray) -> np.ndarray | None:
    """The mean colour of each cell: survives a JPEG re-encode, not a wrong turn. None when
    the picture does not have a test photo's upright shape (3:2 landscape, whole cells)."""
    h, w = pixels.shape[:2]
    rows, cols = GRID
    if h * cols != w * rows or h % rows or w % cols:
        return None
    cells = pixels.astype(np.float32).reshape(rows, h // rows, cols, w // cols, 3)
    result: np.ndarray = cells.mean(axis=(1, 3)).ravel()
    return result


def photo_bytes(seed: int, scale: int = 1) -> bytes:
    """A unique JPEG of coloured cells (upright 96x64 times ``scale``) stored turned, with EXIF
    orientation 3, 6 or 8. Scaled ones get noise, so their copy takes a while to write."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(24, 232, size=(*GRID, 3), dtype=np.uint8)
    side = 8 * scale
    pixels = np.kron(cells, np.ones((side, side, 1), np.uint8))
    if scale > 1:
        noise = rng.integers(-24, 25, size=pixels.shape, dtype=np.int16)
        pixels = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return _jpeg(pixels, (3, 6, 8)[seed % 3])


def gif_bytes(seed: int) -> bytes:
    """A two-frame animated GIF: rotwatchd copies it to review."""
    rng = np.random.default_rng(seed)
    frames = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
              for _ in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100,
                   comment=f"review {seed}".encode())
    return buffer.getvalue()


def junk_bytes(seed: int) -> bytes:
    """Text under a photo's name: rotwatchd quarantines it."""
    return f"this is not a picture ({seed})\n".encode() * 4


@dataclass
class Input:
    name: bytes  # relative to the inbox
    data: bytes
    kind: str  # photo, gif, junk
    counted: bool = True  # False: the scenario itself destroyed it (a symlink swap)
    note: str = ""  # shown when it is lost, e.g. "reuses a finished file's name"
    upright: np.ndarray | None = None
    sha: str = ""

    def __post_init__(self) -> None:
        self.sha = hashlib.sha256(self.data).hexdigest()
        if self.kind in ("photo", "big"):
            self.upright = upright_of(self.data)


MAKERS: dict[str, Callable[[int], bytes]] = {
    "photo": photo_bytes, "big": lambda seed: photo_bytes(seed, scale=16), "gif": gif_bytes,
    "junk": junk_bytes}


# --- the folders ---------------------------------------------------------------------------

CONFIG = """\
inboxes: [{path: inbox, output: outbox, review: review, recursive: true}]
state_dir: state
watch: {quiet_period: 200ms}
output: {original: delete}
"""


class Workspace:
    """inbox/outbox/review/state(+quarantine)/outside under one root, and the inputs sent."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.inbox, self.outbox = self.root / "inbox", self.root / "outbox"
        self.review, self.state = self.root / "review", self.root / "state"
        self.quarantine, self.outside = self.state / "quarantine", self.root / "outside"
        for folder in (self.inbox, self.outbox, self.review, self.quarantine,
                       self.outside / "elsewhere", self.root / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "rotwatchd.yaml"
        self.config.write_text(CONFIG)
        self.secret = Input(b"secret.jpg", photo_bytes(10**6), "photo")
        (self.outside / "secret.jpg").write_bytes(self.secret.data)
        (self.outside / "secret.txt").write_text("outside the folders: must never be read\n")
        self.inputs: dict[bytes, Input] = {}
        self.seed = 0
        self.before_outside = snapshot(self.outside)

    def prepare(self, name: bytes | str, kind: str = "photo") -> Input:
        """A new input with unique content, to be written by :meth:`put`."""
        self.seed += 1
        return Input(os.fsencode(name), MAKERS[kind](self.seed), kind)

    def put(self, item: Input) -> Input:
        """Write ``item`` at ``inbox/name`` (opened, written, closed in one go); remember it."""
        path = self.inbox_path(item.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(item.data)
        if item.kind == "junk":
            # copied with its old mtime (cp -p, rsync -t): a rescan after a kill must not take
            # it for a file still being written and wait a minute before quarantining it
            an_hour_ago = time.time() - 3600
            os.utime(path, (an_hour_ago, an_hour_ago))
        self.inputs[item.name + b"#" + item.sha.encode()] = item
        return item

    def send(self, name: bytes | str, kind: str = "photo") -> Input:
        return self.put(self.prepare(name, kind))

    def inbox_path(self, name: bytes) -> bytes:
        return os.path.join(os.fsencode(self.inbox), name)

    def journal_key(self, item: Input) -> str:
        return os.fsdecode(self.inbox_path(item.name))

    def stored_key(self, item: Input) -> str | bytes:
        """``journal_key`` as the journal stores it: the raw bytes of a path that is not
        valid UTF-8 (see rotwatchd.service.journal), text otherwise."""
        key = self.journal_key(item)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(key)
        return key

    def outcomes(self) -> dict[tuple[str, str], str]:
        """(path, sha256) -> outcome of every journal row (read while the daemon runs)."""
        db = self.state / "journal.sqlite3"
        if not db.exists():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=2)) as con:
                rows = con.execute("SELECT path, sha256, outcome FROM files").fetchall()
        except sqlite3.Error:
            return {}
        # a path that is not valid UTF-8 is stored as its bytes: read back as fsdecode would
        return {(os.fsdecode(row[0]) if isinstance(row[0], bytes) else row[0], row[1]): row[2]
                for row in rows}

    def handled(self) -> set[tuple[str, str]]:
        """(path, sha256) of journal rows with a final outcome."""
        return {key for key, outcome in self.outcomes().items() if outcome in FINAL}

    def refused(self, item: Input) -> bool:
        """``item``'s place in the outbox lies under a symlinked folder: the daemon must not
        write its copy there, and leaves it in the inbox."""
        folder = os.fsencode(self.outbox)
        for part in os.path.dirname(item.name).split(b"/"):
            folder = os.path.join(folder, part)
            if os.path.islink(folder):
                return True
        return False

    def all_handled(self) -> bool:
        """Every input has a final journal row, or an error row when it is refused."""
        outcomes = self.outcomes()
        for item in self.inputs.values():
            outcome = outcomes.get((self.journal_key(item), item.sha))
            if item.counted and outcome not in FINAL and not (
                    outcome == "error" and self.refused(item)):
                return False
        return True


def snapshot(folder: Path) -> dict[bytes, str]:
    """Every entry under ``folder`` (not following links) -> content hash or link target."""
    result: dict[bytes, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                result[path] = "link:" + os.fsdecode(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    result[path] = hashlib.sha256(handle.read()).hexdigest()
            else:
                result[path] = "dir"
    return result


# --- the daemon -----------------------------------------------------------------------------


class Daemon:
    """``python -m rotwatchd run -c CONFIG`` on a workspace; each start logs to its own file."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = ws.root / "logs" / "daemon-0.log"

    def start(self, timeout: float = 60) -> None:
        """Start and wait until it watches its inboxes. RuntimeError if it dies first."""
        self.starts += 1
        self.log = self.ws.root / "logs" / f"daemon-{self.starts}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        with open(self.log, "wb") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rotwatchd", "run", "-c", str(self.ws.config)],
                stdout=subprocess.DEVNULL, stderr=handle, cwd=self.ws.root, env=env)
        if not wait_for(lambda: self.exited() or " running: " in self.text(), timeout):
            raise RuntimeError(f"daemon not ready in {timeout:.0f}s: {self.log}")
        if self.exited():
            raise RuntimeError(f"daemon exited at start: {self.text()[-500:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted((self.ws.root / "logs").glob("daemon-*.log")))

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL now and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def freeze(self) -> None:
        """SIGSTOP: the daemon stops where it is (a trap fired)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def freeze_and_kill(self) -> None:
        """SIGSTOP at once (the trap fired), then SIGKILL: nothing more runs in between."""
        self.freeze()
        self.kill()

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case a trap left it stopped); SIGKILL after 60 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


# --- inotify trap ---------------------------------------------------------------------------

IN_ACCESS, IN_CLOSE_NOWRITE, IN_OPEN = 0x1, 0x10, 0x20
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
_libc = ctypes.CDLL(None, use_errno=True)


class Trap:
    """An inotify watch on one folder: :meth:`wait` returns the first ``(mask, name)`` that
    ``accept`` likes, as soon as the kernel reports it (then the caller SIGSTOPs the daemon)."""

    def __init__(self, folder: Path, mask: int = IN_CREATE | IN_MOVED_TO) -> None:
        self.fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, os.fsencode(folder), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        self.backlog: list[tuple[int, bytes]] = []

    def _read(self, timeout: float) -> None:
        if select.select([self.fd], [], [], max(timeout, 0))[0]:
            data, offset = os.read(self.fd, 65536), 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + length].rstrip(b"\0")
                self.backlog.append((mask, name))
                offset += 16 + length

    def wait(self, accept: Callable[[int, bytes], bool], timeout: float
             ) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            while self.backlog:
                event = self.backlog.pop(0)
                if accept(*event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(left)

    def close(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def renames_delayed(pid: int, seconds: float) -> Iterator[bool]:
    """Make every rename of process ``pid`` (all its threads) wait ``seconds`` before it
    happens, with strace's syscall fault injection: a file written as temp + rename sits
    under its temporary name long enough to be caught. Yields False (nothing delayed) when
    strace is missing or cannot attach."""
    calls = "rename,renameat,renameat2"
    try:
        tracer = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(pid), "-e", f"trace={calls}",
             "-e", f"inject={calls}:delay_enter={int(seconds * 1e6)}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        yield False
        return

    def attached() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        return all("TracerPid:\t0\n" not in (task / "status").read_text()
                   for task in tasks.iterdir())

    try:
        yield wait_for(lambda: tracer.poll() is not None or attached(), 10) and (
            tracer.poll() is None)
    finally:
        if tracer.poll() is None:
            tracer.terminate()
        tracer.wait(30)


@contextlib.contextmanager
def journal_held(ws: Workspace) -> Iterator[None]:
    """Hold the journal's write lock: the daemon's next journal write waits (its busy
    timeout is 30 s), so a kill lands between a file operation and its journal row."""
    con = sqlite3.connect(ws.state / "journal.sqlite3", timeout=10, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("ROLLBACK")
    finally:
        con.close()


def in_progress(ws: Workspace, item: Input, intent: str | None = None) -> bool:
    """The journal has a row for ``item`` without a final outcome (begun, not finished); with
    ``intent``, one that has also recorded that intent (e.g. "quarantine": the move is next)."""
    try:
        with contextlib.closing(sqlite3.connect(ws.state / "journal.sqlite3", timeout=2)) as con:
            row = con.execute("SELECT outcome, intent FROM files WHERE path = ? AND sha256 = ?",
                              (ws.stored_key(item), item.sha)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] not in FINAL and (intent is None or row[1] == intent)


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[int]:
    """Set ``/proc/sys/<name>`` for the duration; yields the old value, always restores it."""
    path = Path("/proc/sys") / name
    old = int(path.read_text())
    path.write_text(str(value))
    try:
        yield old
    finally:
        path.write_text(str(old))


# --- the judge --------------------------------------------------------------------------------


@dataclass
class Verdict:
    tried: int = 0
    lost: int = 0
    duplicated: int = 0
    damaged: int = 0
    read_outside: int = 0
    wrote_outside: int = 0
    pending: int = 0
    refused: int = 0  # left in the inbox because their outbox folder is a symlink out
    stray: int = 0  # the daemon's own hidden temporary files left in result folders
    recover: str = "-"
    notes: list[str] = field(default_factory=list)


def _regular_files(folder: Path) -> Iterator[tuple[bytes, bytes]]:
    for dirpath, _, filenames in os.walk(os.fsencode(folder)):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path, name


class Judge:
    """Matches every file found against the inputs (bytes first, then upright pixels)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.items = list(ws.inputs.values())
        self.by_sha: dict[str, list[int]] = {}
        for index, item in enumerate(self.items):
            self.by_sha.setdefault(item.sha, []).append(index)
        prints = [(i, fingerprint(item.upright)) for i, item in enumerate(self.items)
                  if item.upright is not None]
        known = [(i, p) for i, p in prints if p is not None]
        self.photos = [i for i, _ in known]
        self.prints = np.stack([p for _, p in known]) if known else np.zeros((0, 1))
        self.results = [0] * len(self.items)
        self.originals = [0] * len(self.items)

    def _pixel_match(self, pixels: np.ndarray) -> int | None:
        found = fingerprint(pixels)
        if not self.photos or found is None:
            return None
        distances = np.abs(self.prints - found).mean(axis=1)
        best = int(distances.argmin())
        return self.photos[best] if distances[best] < PIXEL_TOLERANCE else None

    def _is_secret(self, data: bytes, pixels: np.ndarray | None) -> bool:
        secret = self.ws.secret
        if data == secret.data or b"must never be read" in data:
            return True
        assert secret.upright is not None
        expected = fingerprint(secret.upright)
        found = fingerprint(pixels) if pixels is not None else None
        return (expected is not None and found is not None
                and float(np.abs(expected - found).mean()) < PIXEL_TOLERANCE)

    def _look(self, path: bytes, name: bytes, in_inbox: bool, verdict: Verdict) -> None:
        with open(path, "rb") as handle:
            data = handle.read()
        matches = self.by_sha.get(hashlib.sha256(data).hexdigest(), [])
        pixels = None if matches else upright_of(data)
        if not in_inbox and self._is_secret(data, pixels):
            verdict.read_outside += 1
            return
        if not matches and not in_inbox:
            if name.startswith(b".") or name.endswith((b".rwtmp", b".rwlink")):
                verdict.stray += 1
                return
            found = self._pixel_match(pixels) if pixels is not None else None
            if found is None:
                verdict.damaged += 1
                verdict.notes.append(f"damaged: {os.fsdecode(path)!r}"[:120])
                return
            matches = [found]
        for index in matches[:1]:  # identical inputs share one answer
            if in_inbox:
                self.originals[index] += 1
            else:
                self.results[index] += 1

    def verdict(self) -> Verdict:
        verdict = Verdict(tried=len(self.items))
        for folder, in_inbox in ((self.ws.inbox, True), (self.ws.outbox, False),
                                 (self.ws.review, False), (self.ws.quarantine, False)):
            for path, name in _regular_files(folder):
                self._look(path, name, in_inbox, verdict)
        for index, item in enumerate(self.items):
            if not item.counted:
                continue
            if self.results[index] > 1:
                verdict.duplicated += 1
            if self.results[index] == 0:
                if self.originals[index] and self.ws.refused(item):
                    verdict.refused += 1
                elif self.originals[index]:
                    verdict.pending += 1
                else:
                    verdict.lost += 1
                    verdict.notes.append(
                        f"lost: {os.fsdecode(item.name)!r} ({item.kind}{item.note})"[:120])
        after = snapshot(self.ws.outside)
        changed = {k for k in set(after) | set(self.ws.before_outside)
                   if after.get(k) != self.ws.before_outside.get(k)}
        verdict.wrote_outside = len(changed)
        verdict.notes += [f"outside changed: {os.fsdecode(p)}"[:120] for p in sorted(changed)[:3]]
        return verdict
