"""The checks systemd/test-boot.sh runs inside the booted container, as root, after the README's
install steps. Each check waits on a condition with a timeout, prints one "ok" line, and the
first failure prints why (with the unit's journal) and exits 1.

Run with the service's own interpreter (/opt/rotwatchd/venv/bin/python: Pillow and PyYAML are
there). Expects the fake cpufreq tree that test-boot.sh mounts, a user ``alice`` in the
``rotwatchd`` group, and systemd/sandbox_probe.py next to this file.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from PIL import Image, ImageChops, ImageOps, ImageStat
from prometheus_client.parser import text_string_to_metric_families

UNIT = "rotwatchd.service"
SOCKET_UNIT = "rotwatchd.socket"
PAGE = ("127.0.0.1", 8750)  # ListenStream= of rotwatchd.socket
README = Path(__file__).with_name("README.md")
CONFIG = Path("/etc/rotwatchd/rotwatchd.yaml")
SHIPPED_CONFIG = Path(__file__).with_name("rotwatchd.yaml")
PROBE = Path(__file__).with_name("sandbox_probe.py")
INBOX, OUTBOX, REVIEW = (Path("/srv/rotwatchd") / n for n in ("inbox", "outbox", "review"))
GOVERNORS = sorted(Path("/sys/devices/system/cpu/cpufreq").glob("policy*/scaling_governor"))
ORIGINAL_GOVERNOR = "schedutil"  # what test-boot.sh writes into the fake tree
WATCHDOG_SEC, RESTART_SEC = 30.0, 5.0
USER = "alice"  # a member of the rotwatchd group, not root
#: The second reload: short settle time, everything the model decides goes to review, and
#: asleep (governors at powersave) 2 s after the last photo.
FAST_AND_DOUBTFUL = {"watch": {"quiet_period": "1s"}, "model": {"min_confidence": 1.0},
                     "power": {"idle_timeout": "2s"}}


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def say(message: str) -> None:
    print(f"test-boot: ok   {message}", flush=True)


def run(*argv: str, check: bool = True,
        user: str | None = None) -> subprocess.CompletedProcess[str]:
    if user is not None:
        argv = ("runuser", "-u", user, "--", *argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise Failure(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def show(prop: str, unit: str = UNIT) -> str:
    return run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def main_pid() -> int:
    return int(show("MainPID") or 0)


def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` until it returns something true; Failure after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


class Journal:
    """The unit's journal from a cursor on (the daemon's stderr and systemd's own lines)."""

    def __init__(self) -> None:
        out = run("journalctl", "-n", "1", "-o", "cat", "--show-cursor", "-q").stdout
        self.cursor = out.strip().rpartition("cursor: ")[2]

    def text(self) -> str:
        args = ["journalctl", "-u", UNIT, "-o", "cat", "--no-pager"]
        if self.cursor:
            args.append(f"--after-cursor={self.cursor}")
        return run(*args).stdout

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        return wait_for(f"'{needle}' in the journal of {UNIT}",
                        lambda: next((ln for ln in self.text().splitlines() if needle in ln),
                                     None), timeout)


def governors() -> list[str]:
    return [path.read_text().strip() for path in GOVERNORS]


def governors_are(value: str) -> Callable[[], bool]:
    return lambda: governors() == [value] * len(GOVERNORS)


def write_config(changes: dict[str, Any]) -> None:
    """The shipped YAML with ``changes`` merged in (one level deep), as root would edit it."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    CONFIG.write_text(yaml.safe_dump(config, sort_keys=False))


def drop_photo(relative: str, orientation: int | None, *, link: bool = False) -> Image.Image:
    """Drop a 640x480 JPEG into the inbox the way a sync tool does (hidden name, then rename),
    owned by ``alice``. With an orientation it is left half red, right half blue (which way is
    up is unmistakable); without, flat grey (the model cannot tell: it goes to review).
    ``link``: hard-linked in instead of renamed: no event vouches for it being complete, so it
    waits the whole quiet period (a rename or close-after-write is taken after 150 ms)."""
    target = INBOX / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (640, 480), (128, 128, 128))
    exif = Image.Exif()
    if orientation is not None:
        image.paste((200, 30, 30), (0, 0, 320, 480))
        image.paste((30, 30, 200), (320, 0, 640, 480))
        exif[0x0112] = orientation
    hidden = target.with_name(f".{target.name}.part")
    image.save(hidden, "JPEG", quality=95, exif=exif.tobytes())
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam("rotwatchd").gr_gid
    for path in [*(p for p in target.parents if INBOX in p.parents), hidden]:
        os.chown(path, uid, gid)
    if link:
        os.link(hidden, target)
        hidden.unlink()
    else:
        hidden.rename(target)
    return Image.open(target)


def check_upright(output: Path, dropped: Image.Image) -> None:
    """The output is the dropped EXIF-6 photo turned 90 degrees clockwise, tag cleared."""
    with Image.open(output) as image:
        image.load()
        orientation = image.getexif().get(0x0112, 1)
        if image.size != (480, 640) or orientation != 1:
            raise Failure(f"{output}: size {image.size}, orientation {orientation}; "
                          "want (480, 640) and 1")
        top, bottom = image.getpixel((240, 160)), image.getpixel((240, 480))
        expected = ImageOps.exif_transpose(dropped).convert("RGB")
        diff = ImageStat.Stat(ImageChops.difference(image.convert("RGB"), expected)).mean
    if not (top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]) or max(diff) > 4:
        raise Failure(f"{output}: top {top}, bottom {bottom}, mean difference {diff} from "
                      "the photo turned upright: the pixels were not turned")


@contextmanager
def listener() -> Iterator[int]:
    """A TCP port on the container's loopback that accepts everything (for the network probe)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def probe_under_unit(name: str, args: list[str], extra: str = "") -> dict[str, str]:
    """Run sandbox_probe.py as a oneshot copy of the unit as systemd sees it now (drop-ins
    included): every sandbox setting kept, only how it starts and restarts replaced."""
    # RuntimeDirectory too: systemd removes it when the copy stops, under the running daemon.
    lifecycle = ("Type=", "NotifyAccess=", "ExecStart=", "ExecReload=", "WatchdogSec=",
                 "Restart=", "RestartSec=", "RuntimeDirectory")
    kept, section = [], ""
    for line in run("systemctl", "cat", UNIT).stdout.splitlines():  # unit, then drop-ins
        section = line if line.startswith("[") else section
        if section != "[Install]" and not line.startswith(lifecycle):
            kept.append(line)
    result = Path(f"/run/{name}.json")
    unit = Path(f"/run/systemd/system/{name}.service")
    unit.write_text("\n".join(kept) + f"\n[Service]\nType=oneshot\n{extra}"
                    f"ExecStart=/opt/rotwatchd/venv/bin/python {' '.join(args)}\n"
                    f"StandardOutput=truncate:{result}\n")
    run("systemctl", "daemon-reload")
    started = run("systemctl", "start", unit.name, check=False)
    if started.returncode != 0:
        status = run("systemctl", "status", "--no-pager", "-l", unit.name, check=False).stdout
        raise Failure(f"{unit.name} did not run: {started.stderr.strip()}\n{status}")
    found: dict[str, str] = json.loads(result.read_text())
    return found


def check_start() -> None:
    run("systemctl", "stop", UNIT)
    run("systemctl", "start", UNIT)  # returns once READY=1 arrived (Type=notify)
    pid, state = main_pid(), show("ActiveState")
    # Right after `systemctl start` returns, the inbox must already be watched: its inode is
    # in the daemon's inotify watch list (/proc/PID/fdinfo, "inotify wd:N ino:HEX ...").
    watched = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("inotify wd:"):
                watched.add(int(line.split(" ino:")[1].split()[0], 16))
    if state != "active" or os.stat(INBOX).st_ino not in watched:
        raise Failure(f"after systemctl start: {state}, inotify watches {sorted(watched)}, "
                      f"inbox inode {os.stat(INBOX).st_ino}")
    say(f"systemctl start: active (READY=1) with {INBOX} already watched (pid {pid}); "
        f"status: {show('StatusText')}")


def check_sandbox() -> None:
    outside = Path("/srv/rotwatchd-probe")
    outside.mkdir(mode=0o777, exist_ok=True)
    outside.chmod(0o777)  # ordinary permissions would let the service user write here
    with listener() as port:
        args = [str(PROBE), str(port), str(GOVERNORS[0]), str(outside)]
        control = json.loads(run("/opt/rotwatchd/venv/bin/python", *args, user="rotwatchd").stdout)
        sandboxed = probe_under_unit("rotwatchd-probe", args)
        # Each network layer on its own: the others lifted in the copy.
        only_deny = probe_under_unit("rotwatchd-probe-ipdeny", args,
                                     "RestrictAddressFamilies=\nPrivateNetwork=no\n")
        only_netns = probe_under_unit("rotwatchd-probe-netns", args,
                                      "RestrictAddressFamilies=\nIPAddressDeny=\n")
    deny, netns = only_deny["connect 127.0.0.1"], only_netns["connect 127.0.0.1"]
    expected = {f"write {outside}": "EROFS",
                "list /home": "EACCES", "connect 127.0.0.1": "EAFNOSUPPORT",
                "socket AF_INET6": "EAFNOSUPPORT", "socket AF_NETLINK": "EAFNOSUPPORT",
                "syscall setfsuid": "EPERM", "syscall unshare(CLONE_NEWUSER)": "EPERM"}
    problems = []
    for name, got in sandboxed.items():
        want = expected.get(name, "ok")
        if got != want:
            problems.append(f"{name}: {got} under the unit, want {want}")
        if want != "ok" and control[name] != "ok":
            problems.append(f"{name}: {control[name]} even without the sandbox (the control); "
                            "the check proves nothing here")
    # IPAddressDeny= drops the packets (the connect times out or gets EPERM); a private
    # network namespace has nobody listening on its own loopback.
    for layer, found, want in (("IPAddressDeny=any alone", only_deny, ("timeout", "EPERM")),
                               ("PrivateNetwork=yes alone", only_netns, ("ECONNREFUSED",))):
        if found["connect 127.0.0.1"] not in want:
            problems.append(f"connect 127.0.0.1 with {layer}: {found['connect 127.0.0.1']}, "
                            f"want {want}")
    if problems:
        raise Failure("sandbox:\n  " + "\n  ".join(problems))
    refused = ", ".join(f"{name} ({got})" for name, got in sandboxed.items() if got != "ok")
    say(f"sandbox refuses: {refused}; all of these work for the same user outside the unit")
    say(f"network layers each on their own: IPAddressDeny=any -> {deny}, "
        f"PrivateNetwork=yes -> {netns}")
    allowed = ", ".join(name.split()[1] for name, got in sandboxed.items() if got == "ok")
    say(f"sandbox allows writes to {allowed}")


def check_photo(relative: str) -> Path:
    output = OUTBOX / relative
    with drop_photo(relative, orientation=6) as dropped:
        wait_for(f"{output}", output.exists, 60)
        check_upright(output, dropped)
    return output


def check_reload(journal: Journal) -> None:
    pid = main_pid()
    write_config({"watch": {"quiet_period": "15s"}})
    run("systemctl", "reload", UNIT)
    journal.wait_for("configuration reloaded from")
    # A file that is still settling when the next reload comes must survive it.
    drop_photo("flat.jpg", orientation=None, link=True).close()
    wait_for("the flat photo queued and settling (STATUS=)",
             lambda: "1 settling" in show("StatusText"), 30)
    write_config(FAST_AND_DOUBTFUL)
    run("systemctl", "reload", UNIT)
    wait_for("the queued flat photo in review", lambda: (REVIEW / "flat.jpg").exists(), 90)
    decided = journal.wait_for("flat.jpg needs review")
    if "< 1)" not in decided:
        raise Failure(f"the flat photo was not judged by the new min_confidence 1.0: {decided}")
    if main_pid() != pid:
        raise Failure(f"the main PID changed over two reloads: {pid} -> {main_pid()}")
    say(f"systemctl reload (valid, twice): same pid {pid}; a photo settling during the reload "
        "was processed under the new config (min_confidence 1.0: review)")
    wait_for("the daemon asleep with governors at powersave", governors_are("powersave"), 30)
    say(f"governors written by the sandboxed daemon when idle: {governors()}")

    write_config({**FAST_AND_DOUBTFUL, "workers": 0})
    run("systemctl", "reload", UNIT)
    line = journal.wait_for("reload rejected")
    if f"{CONFIG}: workers" not in line or main_pid() != pid:
        raise Failure(f"invalid reload: log line {line!r}, pid {pid} -> {main_pid()}")
    wait_for("STATUS= saying the reload was rejected",
             lambda: show("StatusText").startswith("reload rejected"), 10)
    check_photo("after-rejected-reload.jpg")
    say(f"systemctl reload (invalid): kept pid {pid} and the old config; the log says: {line}")


def request(method: str, path: str, headers: dict[str, str] | None = None,
         form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """One request to the page on the container's loopback, outside the service's network
    namespace (as a browser on this machine): status, headers, body."""
    connection = http.client.HTTPConnection(*PAGE, timeout=30)
    body = urlencode(form) if form is not None else None
    sent = dict(headers or {})
    if form is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    except OSError as exc:
        raise Failure(f"{method} http://{PAGE[0]}:{PAGE[1]}{path}: {exc}") from None
    finally:
        connection.close()


def check_web_page() -> Path:
    """The page through rotwatchd.socket: the review page, /metrics, and a review item settled
    with a POST as the page's own form sends it. Returns the upright copy it wrote."""
    pid = main_pid()
    own, service = os.readlink("/proc/1/ns/net"), os.readlink(f"/proc/{pid}/ns/net")
    if own == service:
        raise Failure(f"the service runs in the container's network namespace ({own})")
    if show("ActiveState", SOCKET_UNIT) != "active":
        raise Failure(f"{SOCKET_UNIT} is {show('ActiveState', SOCKET_UNIT)}, not active")
    status, headers, _ = request("GET", "/")
    if status != 303 or headers.get("Location") != "/review":
        raise Failure(f"GET /: {status} to {headers.get('Location')}, want 303 to /review")
    status, headers, page = request("GET", "/review")
    if status != 200 or "<h1>Review" not in page:
        raise Failure(f"GET /review: {status}, {page[:200]!r}")
    say(f"GET http://{PAGE[0]}:{PAGE[1]}/ from outside the service's network namespace "
        f"({service}, the container's is {own}): the review page, through {SOCKET_UNIT}")

    status, headers, text = request("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    if status != 200 or "rotwatchd_files" not in families:
        raise Failure(f"GET /metrics: {status}, families {sorted(families)}")
    outcomes = {s.labels.get("outcome"): s.value for s in families["rotwatchd_files"].samples
                if s.name == "rotwatchd_files_total"}
    say(f"/metrics parses as Prometheus text ({len(families)} families; files by outcome "
        f"since the last start: {outcomes})")

    # The config in force sends every model decision to review (min_confidence 1.0).
    drop_photo("web.jpg", orientation=None).close()
    wait_for("web.jpg in review", lambda: (REVIEW / "web.jpg").exists(), 60)

    def review_page_with_it() -> str | None:
        page = request("GET", "/review")[2]
        return page if "web.jpg" in page else None

    page = wait_for("web.jpg on the review page", review_page_with_it, 30)
    card = next(c for c in page.split('<form class="card"')[1:] if "web.jpg" in c)
    action = re.search(r'action="([^"]+)"', card)
    csrf = re.search(r'name="csrf" value="([^"]+)"', card)
    if action is None or csrf is None:
        raise Failure(f"no form action or CSRF token on the card of web.jpg: {card[:300]!r}")
    origin = {"Origin": f"http://{PAGE[0]}:{PAGE[1]}", "Sec-Fetch-Site": "same-origin"}
    status, headers, body = request("POST", action.group(1), origin,
                                 {"correction": "90", "csrf": csrf.group(1)})
    if status != 303:
        raise Failure(f"POST {action.group(1)} (turn right): {status} {body.strip()}")
    output = OUTBOX / "web.jpg"
    wait_for(f"{output}", output.exists, 30)
    with Image.open(output) as image:
        if image.size != (480, 640):
            raise Failure(f"{output} is {image.size}, want (480, 640): not turned")
    say(f"review item settled with a POST as the page sends it (CSRF token, Origin): upright "
        f"copy {output}")
    return output


def readme_blocks(heading: str) -> list[tuple[str, str]]:
    """The fenced code blocks (language, text) of one section of systemd/README.md."""
    section = README.read_text().split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def run_shell(script: str) -> None:
    done = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise Failure(f"`{script.strip()}` exited {done.returncode}: {done.stderr.strip()}")


def check_web_page_beyond_loopback() -> None:
    """systemd/README.md's "Open the page to your network", its commands run as written (the
    drop-ins `systemctl edit` would save written to the paths it names): first only the
    socket moved to 0.0.0.0 (the daemon must refuse it without a token), then with the
    token passed by LoadCredential=. Undone at the end: loopback again, no token."""
    blocks = readme_blocks("### Open the page to your network")
    kinds = [kind for kind, _ in blocks]
    if kinds != ["sh", "ini", "ini", "yaml", "sh"]:
        raise Failure(f"systemd/README.md, 'Open the page to your network': blocks {kinds}")
    (_, commands), (_, socket_ini), (_, service_ini), (_, web_yaml), (_, restart) = blocks
    journal = Journal()
    socket_dropin = Path("/etc/systemd/system/rotwatchd.socket.d/override.conf")
    service_dropin = Path("/etc/systemd/system/rotwatchd.service.d/override.conf")
    socket_dropin.parent.mkdir(exist_ok=True)
    socket_dropin.write_text(socket_ini)
    run("systemctl", "daemon-reload")
    run_shell(restart)
    line = journal.wait_for("web page off")
    if "listens on 0.0.0.0:8750, not a loopback address: set web.token" not in line:
        raise Failure(f"socket on 0.0.0.0 without a token: {line}")
    say(f"{SOCKET_UNIT} on 0.0.0.0:8750 and no token: no page; the log says: {line}")

    run_shell("\n".join(c for c in commands.splitlines() if not c.startswith("systemctl edit")))
    service_dropin.parent.mkdir(exist_ok=True)
    service_dropin.write_text(service_ini)
    run("systemctl", "daemon-reload")
    write_config(yaml.safe_load(web_yaml))
    run_shell(restart)
    journal.wait_for("web page on http://0.0.0.0:8750/ (socket from systemd) (token required)")
    token = Path("/etc/rotwatchd/web-token").read_text().strip()
    mode = Path("/etc/rotwatchd/web-token").stat().st_mode & 0o777
    without = request("GET", "/review")[0]
    status, _, page = request("GET", "/review", {"Authorization": f"Bearer {token}"})
    if mode != 0o600 or without != 401 or status != 200 or "<h1>Review" not in page:
        raise Failure(f"token file mode {oct(mode)}; GET /review without the token: {without}, "
                      f"with it: {status}; want 0o600, 401 and 200")
    say("the README's LAN setup (socket on 0.0.0.0:8750, token from a root-only file by "
        "LoadCredential=): 401 without the token, the review page with it")

    # IPAddressDeny= on the socket unit filters the connections to the passed socket (an
    # allowed range that leaves loopback out: this machine's own connection is dropped).
    socket_dropin.write_text(socket_ini + "IPAddressAllow=192.0.2.0/24\nIPAddressDeny=any\n")
    run("systemctl", "daemon-reload")
    run_shell(restart)
    try:
        socket.create_connection(PAGE, timeout=3).close()
        raise Failure(f"{SOCKET_UNIT} with IPAddressAllow=192.0.2.0/24, IPAddressDeny=any: "
                      "a connection from 127.0.0.1 was accepted")
    except OSError as exc:
        dropped = type(exc).__name__
    say(f"IPAddressAllow=192.0.2.0/24 + IPAddressDeny=any on {SOCKET_UNIT}: a connection from "
        f"127.0.0.1 is dropped ({dropped})")

    socket_dropin.unlink()
    service_dropin.unlink()
    run("systemctl", "daemon-reload")
    shutil.copy(SHIPPED_CONFIG, CONFIG)
    run_shell(restart)
    if request("GET", "/review")[0] != 200:
        raise Failure("back on loopback without a token, GET /review is not 200")


def check_connection_starts_the_service() -> None:
    """With the service stopped, a connection to the socket starts it and gets its answer."""
    if show("ActiveState") != "inactive":
        raise Failure(f"{UNIT} is {show('ActiveState')} before the connection, want inactive")
    status = request("GET", "/review")[0]
    if status != 200 or show("ActiveState") != "active":
        raise Failure(f"GET /review with the service stopped: {status}, then "
                      f"{show('ActiveState')}; want 200 and active")
    say(f"a connection to {SOCKET_UNIT} with the service stopped started it (pid {main_pid()}) "
        "and was answered")
    run("systemctl", "stop", UNIT)


def check_group_member_can_manage_outputs(outputs: list[Path]) -> None:
    for folder in {*(p.parent for p in outputs)}:
        mode = folder.stat().st_mode
        if mode & 0o2070 != 0o2070:
            raise Failure(f"{folder} is {oct(mode)}: not set-gid and group-writable")
    home = Path("/home") / USER
    for output in outputs:
        if output.parent == OUTBOX:
            run("rm", str(output), user=USER)
        else:
            run("mv", str(output), str(home), user=USER)
        if output.exists():
            raise Failure(f"{output} still there after {USER} removed it")
    state = Path("/var/lib/rotwatchd")
    listed = run("ls", str(state), user=USER, check=False)
    if state.stat().st_mode & 0o077 or listed.returncode == 0:
        raise Failure(f"{state} is {oct(state.stat().st_mode)}: open to the group")
    say(f"{USER} (group rotwatchd, not root) deleted/moved the service's outputs "
        f"({', '.join(map(str, outputs))}); {state} stays closed to {USER}")


def check_stop() -> None:
    journal = Journal()
    run("systemctl", "stop", UNIT)
    result, state = show("Result"), show("ActiveState")
    if result != "success" or state != "inactive":
        raise Failure(f"systemctl stop: Result={result}, ActiveState={state}")
    journal.wait_for("stopped")
    if not governors_are(ORIGINAL_GOVERNOR)():
        raise Failure(f"after stop the governors are {governors()}, want {ORIGINAL_GOVERNOR}")
    say(f"systemctl stop: Result=success, governors back to {governors()}")


def check_watchdog() -> None:
    """SIGSTOP the daemon while it sleeps (governors at powersave): systemd must kill and
    restart it, and the restarted daemon must still restore the governors found before."""
    journal = Journal()
    write_config({"power": {"idle_timeout": "2s"}})
    run("systemctl", "start", UNIT)
    wait_for("the daemon asleep (powersave)", governors_are("powersave"), 30)
    pid, restarts = main_pid(), int(show("NRestarts"))
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    new_pid = wait_for("systemd to replace the stopped daemon",
                       lambda: (p := main_pid()) not in (0, pid) and p,
                       WATCHDOG_SEC + RESTART_SEC + 30)
    replaced = time.monotonic() - stopped
    wait_for("the restarted daemon to be active", lambda: show("ActiveState") == "active", 60)
    ready = time.monotonic() - stopped
    journal.wait_for("Watchdog timeout")
    if Path(f"/proc/{pid}").exists():
        raise Failure(f"the stopped daemon {pid} is still there")
    # The last ping may come just before the SIGSTOP; 2 s for timers and this poll.
    if int(show("NRestarts")) != restarts + 1 or replaced > WATCHDOG_SEC + RESTART_SEC + 2:
        raise Failure(f"restarts {restarts} -> {show('NRestarts')}, new process after "
                      f"{replaced:.1f}s (WatchdogSec + RestartSec = "
                      f"{WATCHDOG_SEC + RESTART_SEC:.0f}s)")
    say(f"watchdog: SIGSTOPped pid {pid} killed, pid {new_pid} started {replaced:.1f}s later "
        f"(WatchdogSec + RestartSec = {WATCHDOG_SEC + RESTART_SEC:.0f}s), active again after "
        f"{ready:.1f}s")
    shutil.copy(SHIPPED_CONFIG, CONFIG)


def main() -> int:
    if not GOVERNORS:
        print("test-boot: FAIL no cpufreq policy files (test-boot.sh mounts a fake tree)")
        return 1
    journal = Journal()
    try:
        check_start()
        check_sandbox()
        outputs = [check_photo("turned.jpg"), check_photo("alice/turned.jpg")]
        say(f"EXIF orientation 6 photos written upright: {', '.join(map(str, outputs))}")
        check_reload(journal)
        outputs += [REVIEW / "flat.jpg", OUTBOX / "after-rejected-reload.jpg",
                    check_web_page()]
        check_group_member_can_manage_outputs(outputs)
        shutil.copy(SHIPPED_CONFIG, CONFIG)
        check_web_page_beyond_loopback()
        check_stop()
        check_watchdog()
        check_stop()  # the governors found before the watchdog restart come back
        check_connection_starts_the_service()
    except Failure as exc:
        print(f"test-boot: FAIL {exc}", flush=True)
        print(f"--- journalctl -u {UNIT} (this run) ---\n{journal.text()}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
