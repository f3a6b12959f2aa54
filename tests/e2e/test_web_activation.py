"""``web.listen: systemd``: the page on a listening socket passed the way systemd passes one
(socket activation: descriptor 3, LISTEN_FDS, LISTEN_PID), to a real ``rotwatchd run`` and
to the server in-process; real sockets and real HTTP throughout, no systemd needed."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo, red_edge, wait_until
from helpers.service_process import ServiceProcess
from helpers.web_client import call, csrf_of, same_origin
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from rotwatchd.config import ConfigError
from rotwatchd.web.activation import ActivationError, adopt, listen_fds
from rotwatchd.web.server import WebServer

pytestmark = pytest.mark.timeout(180)

TOKEN = "a-long-enough-secret-for-tests"
CONFIG = """\
inboxes: [{{path: inbox, output: outbox}}]
state_dir: state
watch: {{quiet_period: 200ms}}
model: {{min_confidence: {confidence}}}
power: {{cpufreq_path: {cpu}}}
web: {{listen: systemd{extra}}}
"""


def _config(tmp_path: Path, *, confidence: float = 0, extra: str = "") -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "cpu").mkdir(exist_ok=True)  # no cpufreq: power saving by governor is off
    config = tmp_path / "rotwatchd.yaml"
    config.write_text(CONFIG.format(confidence=confidence, cpu=tmp_path / "cpu", extra=extra))
    return config


def _running(daemon: ServiceProcess) -> bool:
    daemon.check_alive()
    return " running: 1 inbox(es)" in daemon.text()


def _started(tmp_path: Path, config: Path, **kwargs: Any) -> ServiceProcess:
    """``rotwatchd run`` started and past the point where the page is served (the startup
    line; no notify socket, whose unread datagrams would block a daemon that sends more)."""
    daemon = ServiceProcess(config, tmp_path / "daemon.log", None, **kwargs)
    wait_until(lambda: _running(daemon), timeout=90)
    return daemon


def _reload(daemon: ServiceProcess, times: int) -> None:
    daemon.send(signal.SIGHUP)
    wait_until(lambda: daemon.text().count("configuration reloaded") == times, timeout=30)


def _lines(daemon: ServiceProcess, needle: str) -> list[str]:
    return [line for line in daemon.text().splitlines() if needle in line]


def test_the_page_answers_on_the_passed_socket_and_settles_a_review_item(
        tmp_path: Path) -> None:
    """The socket exists before the daemon: a request sent before it started waits in the
    socket's queue and is answered once it runs, as with a socket systemd holds."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    early = socket.create_connection(("127.0.0.1", port), timeout=60)
    early.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Connection: close\r\n\r\n".encode())
    config = _config(tmp_path, confidence=1.0)  # every model decision goes to review
    daemon = _started(tmp_path, config, listening=listening)
    try:
        with early:
            answer = b""
            while chunk := early.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].endswith(b"200 OK"), head
        assert {f.name for f in text_string_to_metric_families(body.decode())} >= {
            "rotwatchd_files", "rotwatchd_review_backlog"}
        (line,) = _lines(daemon, "web page on")
        assert line.endswith(f"web page on {base} (socket from systemd)")

        make_photo(tmp_path / "inbox" / "doubtful.jpg", correction=90, size=(120, 80))
        wait_until(lambda: "doubtful.jpg" in call(base, "/review").text, timeout=60)
        page = call(base, "/review").text
        action = page.split('action="', 1)[1].split('"', 1)[0]
        reply = call(base, action, method="POST", headers=same_origin(base),
                     form={"correction": "90", "csrf": csrf_of(page)})
        assert reply.status == 303, reply.text
        with Image.open(tmp_path / "outbox" / "doubtful.jpg") as image:
            assert red_edge(image)[0] == "top"

        # A reload that leaves the web section alone keeps the page as it is.
        config.write_text(config.read_text().replace("200ms", "300ms"))
        _reload(daemon, 1)
        assert call(base, "/review").status == 200
        assert len(_lines(daemon, "web page on")) == 1
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        listening.close()


def test_a_passed_socket_beyond_loopback_is_served_only_with_a_token(
        tmp_path: Path) -> None:
    """The address rule of web.listen, applied to the address systemd bound (the daemon
    learns it with getsockname): without a token no page, one log line; a reload that adds
    the token serves the same socket again."""
    listening = socket.create_server(("0.0.0.0", 0))
    port = listening.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    config = _config(tmp_path)
    daemon = _started(tmp_path, config, listening=listening)
    try:
        (line,) = _lines(daemon, "web page off")
        assert line.endswith(f"web page off: the socket systemd passed listens on 0.0.0.0:{port}"
                             ", not a loopback address: set web.token or web.token_file, or "
                             "anyone who can reach it could see and settle your photos")
        assert not _lines(daemon, "web page on")

        (tmp_path / "token").write_text(f"{TOKEN}\n")
        config.write_text(_config(tmp_path, extra=", token_file: token").read_text())
        _reload(daemon, 1)
        wait_until(lambda: _lines(daemon, "web page on"), timeout=10)
        assert _lines(daemon, "web page on")[0].endswith(
            f"web page on http://0.0.0.0:{port}/ (socket from systemd) (token required)")
        assert call(base, "/review").status == 401
        assert call(base, "/review", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        listening.close()


def test_without_a_passed_socket_the_page_is_off_in_one_line_and_photos_are_turned(
        tmp_path: Path) -> None:
    config = _config(tmp_path)
    daemon = _started(tmp_path, config)
    try:
        make_photo(tmp_path / "inbox" / "p.jpg", correction=90, size=(320, 240))
        wait_until(lambda: (tmp_path / "outbox" / "p.jpg").exists(), timeout=60)
        (line,) = _lines(daemon, "web page")
        assert line.endswith("web page off: web.listen is systemd, but systemd passed no socket "
                             "(LISTEN_FDS is not set: is rotwatchd.socket enabled and started "
                             "before the service?) (the daemon runs on without it)")
        _reload(daemon, 1)  # the reason stays the same: no second line per reload
        assert len(_lines(daemon, "web page")) == 1
        assert daemon.stop() == 0
    finally:
        daemon.stop()


def test_sockets_meant_for_another_process_are_left_alone(
        tmp_path: Path) -> None:
    """LISTEN_PID names another process (a parent that did not unset the variables): the
    daemon must not take descriptor 3 as its socket."""
    listening = socket.create_server(("127.0.0.1", 0))
    daemon = _started(tmp_path, _config(tmp_path), listening=listening,
                      env={"LISTEN_PID": "1"})
    try:
        (line,) = _lines(daemon, "web page")
        assert "web page off: web.listen is systemd, but the sockets in LISTEN_FDS are for " \
               "process 1, not this one (" in line
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        listening.close()


# --- the protocol and the server, in-process ------------------------------------------------

def test_listen_fds_follows_sd_listen_fds_and_unsets_the_variables() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b",
               "PATH": "/bin"}
    assert listen_fds(environ) == [3, 4]
    assert environ == {"PATH": "/bin"}  # a child process will not take them
    assert listen_fds({"LISTEN_PID": "7", "LISTEN_FDS": "1"}, pid=7, first_fd=10) == [10]
    for environ, why in (({}, "systemd passed no socket (LISTEN_FDS is not set"),
                         ({"LISTEN_PID": "1", "LISTEN_FDS": "1"},
                          "the sockets in LISTEN_FDS are for process 1, not this one"),
                         ({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, "are for process x"),
                         ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"},
                          "systemd passed no socket (LISTEN_FDS=0)")):
        with pytest.raises(ActivationError, match=why.replace("(", r"\(").replace(")", r"\)")):
            listen_fds(environ)


def test_only_a_listening_tcp_socket_is_adopted() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    listening.set_inheritable(True)  # as systemd passes it
    fd = listening.detach()
    adopted = adopt(fd)
    try:
        assert adopted.fileno() == fd and not adopted.get_inheritable()
        assert adopted.getsockname()[0] == "127.0.0.1"
    finally:
        adopted.close()
    read, write = os.pipe()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as idle, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        idle.bind(("127.0.0.1", 0))
        unix.bind("\0rotwatchd-test-" + str(os.getpid()))
        unix.listen()
        cases = ((read, "is not a socket"), (udp.fileno(), "is not TCP"),
                 (unix.fileno(), "is not TCP"), (idle.fileno(), "is not listening"))
        for fd, why in cases:
            with pytest.raises(ActivationError, match=why):
                adopt(fd)
            os.fstat(fd)  # refused, and still open for its owner
    os.close(read)
    os.close(write)
    with pytest.raises(ActivationError, match="is not open"):
        adopt(write)


def test_a_server_on_a_copy_of_the_socket_leaves_the_original_listening() -> None:
    """What a reload that changes the web section does with a passed socket: stop the
    server (closing its copy), then serve the original again on a new copy."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"served"]

    try:
        for _ in range(2):
            server = WebServer.on_sockets(app, [listening.dup()])  # type: ignore[arg-type]
            assert server.url == f"http://127.0.0.1:{port}/"
            server.start()
            try:
                assert call(server.url, "/").body == b"served"
            finally:
                server.stop()
        assert listening.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        listening.close()


def test_every_passed_socket_is_served() -> None:
    """A socket unit may list several ListenStream= lines; systemd passes one socket each."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [str(environ["SERVER_PORT"]).encode()]

    server = WebServer.on_sockets(app, sockets)  # type: ignore[arg-type]
    server.start()
    try:
        for sock in sockets:
            port = sock.getsockname()[1]
            assert call(f"http://127.0.0.1:{port}/", "/").body == str(port).encode()
    finally:
        server.stop()
    assert all(sock.fileno() == -1 for sock in sockets)  # the server owned them


def test_web_listen_systemd_is_valid_and_needs_no_token_yet(tmp_path: Path) -> None:
    config = fast_config(tmp_path, web={"listen": "systemd"})
    assert config.web.listen == "systemd" and config.web.token is None
    with pytest.raises(ConfigError, match="web.listen: 'systemd' is not an IP address"):
        fast_config(tmp_path, web={"listen": "systemd:8750"})
