"""The web page through a real daemon, real images and real HTTP on a real socket: the review
queue settled over HTTP, the access rules (token, cross-site requests, Host), /metrics,
starting, stopping and reloading with the daemon."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import Results, fast_config, make_photo, red_edge
from helpers.web_client import call, csrf_of, same_origin
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from rotwatchd.config import Config
from rotwatchd.service.daemon import Daemon

TOKEN = "a-long-enough-secret-for-tests"
CORRECTIONS = (90, 180, 270)


def _config(tmp_path: Path, **web: Any) -> Config:
    """Every model decision goes to review (the marker classifier is never 100 % sure)."""
    return fast_config(tmp_path, model={"min_confidence": 1.0},
                       web={"listen": "127.0.0.1:0", **web})


def _queued(daemon_factory: Any, config: Config,
            corrections: tuple[int, ...] = CORRECTIONS) -> tuple[Daemon, Results, str]:
    daemon, results = daemon_factory(config)
    for i, correction in enumerate(corrections):
        make_photo(config.inboxes[0].path / f"photo{i}.jpg", correction=correction, seed=i,
                   size=(120, 80))
    results.wait_count(len(corrections))
    assert daemon.web is not None and daemon.web.url is not None
    return daemon, results, daemon.web.url


def _metrics(base: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = call(base, "/metrics", headers=headers)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples}


def test_the_review_page_lists_each_item_in_four_turns_with_the_guess_marked(
        tmp_path: Path, daemon_factory: Any) -> None:
    daemon, _, base = _queued(daemon_factory, _config(tmp_path))
    reply = call(base, "/review")
    assert reply.status == 200
    page = reply.text
    for item in daemon.review.waiting():
        assert f'action="/review/{item.id}"' in page
        assert Path(item.path).name in page
    assert page.count('class="turn guess"') == 3  # the marker classifier always has a guess
    assert page.count('name="correction"') == 12
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_settling_over_http_writes_the_upright_copy_and_drops_the_item(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = _config(tmp_path)
    daemon, _, base = _queued(daemon_factory, config)
    first = daemon.review.waiting()[0]
    thumb = call(base, f"/review/{first.id}/thumb")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    cached = config.state_dir / "thumbs" / f"{first.sha256}-320.jpg"
    assert cached.read_bytes() == thumb.body
    csrf = csrf_of(call(base, "/review").text)

    reply = call(base, f"/review/{first.id}", method="POST", headers=same_origin(base),
                 form={"correction": str(first.guess), "csrf": csrf})
    assert reply.status == 303 and reply.headers["Location"] == "/review"
    output = config.inboxes[0].output / Path(first.path).name
    with Image.open(output) as image:
        assert red_edge(image)[0] == "top"
    assert not Path(first.review_copy).exists() and not cached.exists()
    assert first.id not in [item.id for item in daemon.review.waiting()]

    again = call(base, f"/review/{first.id}", method="POST",
                 headers={**same_origin(base), "Accept": "application/json"},
                 form={"correction": "0", "csrf": csrf})
    assert again.status == 409 and "already settled" in again.text
    second = daemon.review.waiting()[0]
    as_json = call(base, f"/review/{second.id}", method="POST",
                   headers={**same_origin(base), "Accept": "application/json",
                            "X-CSRF-Token": csrf}, form={"correction": "180"})
    assert as_json.status == 200, as_json.text
    assert b'"backlog":1' in as_json.body and b'"answer":180' in as_json.body


def test_unknown_items_and_bad_answers_are_refused(tmp_path: Path,
                                                  daemon_factory: Any) -> None:
    daemon, _, base = _queued(daemon_factory, _config(tmp_path), corrections=(90,))
    csrf = csrf_of(call(base, "/review").text)
    (item,) = daemon.review.waiting()
    post = {"method": "POST", "headers": same_origin(base)}
    assert call(base, "/review/999", form={"correction": "0", "csrf": csrf}, **post).status == 404
    assert call(base, f"/review/{item.id}", form={"correction": "45", "csrf": csrf},
                **post).status == 400
    assert call(base, "/review/999/thumb").status == 404
    assert call(base, f"/review/{item.id}").status == 405  # settling is POST only
    assert call(base, "/review/..%2f..%2fetc%2fpasswd/thumb").status == 404
    assert daemon.review.backlog() == 1


def test_cross_site_posts_and_forms_without_the_csrf_token_are_refused(
        tmp_path: Path, daemon_factory: Any) -> None:
    daemon, _, base = _queued(daemon_factory, _config(tmp_path), corrections=(90,))
    csrf = csrf_of(call(base, "/review").text)
    (item,) = daemon.review.waiting()
    path, form = f"/review/{item.id}", {"correction": "90", "csrf": csrf}
    for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://evil.example"},
                    {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "null"}):
        reply = call(base, path, method="POST", headers=headers, form=form)
        assert reply.status == 403, headers
    no_token = call(base, path, method="POST", headers=same_origin(base),
                    form={"correction": "90"})
    assert no_token.status == 403 and "did not make" in no_token.text
    wrong = call(base, path, method="POST", headers=same_origin(base),
                 form={"correction": "90", "csrf": "x" + csrf})
    assert wrong.status == 403
    assert daemon.review.backlog() == 1


def test_on_loopback_without_a_token_a_foreign_host_name_is_refused(
        tmp_path: Path, daemon_factory: Any) -> None:
    """A site that points its own name at 127.0.0.1 (DNS rebinding) must not read the page."""
    _, _, base = _queued(daemon_factory, _config(tmp_path), corrections=(90,))
    port = base.rstrip("/").rsplit(":", 1)[1]
    assert call(base, "/review", headers={"Host": f"attacker.example:{port}"}).status == 403
    assert call(base, "/review", headers={"Host": f"localhost:{port}"}).status == 200


def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path,
                                                       daemon_factory: Any) -> None:
    config = _config(tmp_path, listen="0.0.0.0:0", token=TOKEN)
    daemon, _, base = _queued(daemon_factory, config, corrections=(90,))
    for path in ("/review", "/status", "/metrics", "/review/1/thumb"):
        reply = call(base, path)
        assert reply.status == 401, path
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(base, "/review", headers={"Authorization": "Bearer wrong-token"}).status == 401
    assert call(base, f"/review?token={TOKEN}x").status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(base, "/review", headers=bearer).status == 200

    once = call(base, f"/status?token={TOKEN}")
    assert once.status == 303 and once.headers["Location"] == "/status"
    cookie = once.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    jar = {"Cookie": cookie.split(";", 1)[0]}
    page = call(base, "/review", headers=jar)
    assert page.status == 200
    csrf = csrf_of(page.text)
    (item,) = daemon.review.waiting()
    evil = call(base, f"/review/{item.id}", method="POST",
                headers={**jar, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                form={"correction": "90", "csrf": csrf})
    assert evil.status == 403 and daemon.review.backlog() == 1
    without = call(base, f"/review/{item.id}", method="POST", headers=same_origin(base),
                   form={"correction": "90", "csrf": csrf})
    assert without.status == 401 and daemon.review.backlog() == 1
    good = call(base, f"/review/{item.id}", method="POST", headers={**jar, **same_origin(base)},
                form={"correction": "90", "csrf": csrf})
    assert good.status == 303 and daemon.review.backlog() == 0


def test_metrics_parse_as_prometheus_text_and_count_what_the_daemon_did(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = fast_config(tmp_path, web={"listen": "127.0.0.1:0"})  # calibrated: markers done
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "a.jpg", correction=90)
    make_photo(config.inboxes[0].path / "b.jpg", correction=0)
    make_photo(config.inboxes[0].path / "plain.jpg", marker=False)  # unsure: review
    (config.inboxes[0].path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    items = results.wait_count(4)
    outcomes = sorted(str(r.outcome) for r in items)
    assert daemon.web is not None and daemon.web.url is not None
    metrics = _metrics(daemon.web.url)
    for outcome in ("done", "review", "quarantined", "error", "ignored"):
        assert metrics[("rotwatchd_files_total", (("outcome", outcome),))] == \
            outcomes.count(outcome)
    timed = outcomes.count("done") + outcomes.count("review")
    assert metrics[("rotwatchd_processing_seconds_count", ())] == timed
    assert metrics[("rotwatchd_processing_seconds_bucket", (("le", "+Inf"),))] == timed
    assert metrics[("rotwatchd_review_backlog", ())] == outcomes.count("review") == 1
    assert metrics[("rotwatchd_queue_files", (("state", "queued"),))] == 0
    assert metrics[("rotwatchd_power_state", (("state", "unmanaged"),))] == 1
    assert metrics[("rotwatchd_power_state", (("state", "asleep"),))] == 0


def test_the_status_page_shows_counts_queue_power_errors_and_plots(
        tmp_path: Path, daemon_factory: Any) -> None:
    config = _config(tmp_path)
    daemon, results, base = _queued(daemon_factory, config, corrections=(90,))
    (config.inboxes[0].path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    results.wait_count(2)
    page = call(base, "/status").text
    assert "<th>review</th><td>1</td>" in page
    assert "<th>quarantined</th><td>1</td>" in page
    assert "broken.jpg" in page  # among the last errors
    assert "unmanaged" in page
    assert page.count("<svg") == 4 and "images per minute, up to 2 /min" in page


def test_a_port_in_use_is_one_log_line_and_the_daemon_works_on(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = _config(tmp_path, listen=f"127.0.0.1:{port}")
        with caplog.at_level(logging.INFO, logger="rotwatchd"):
            daemon, results = daemon_factory(config)
            make_photo(config.inboxes[0].path / "a.jpg", correction=90)
            (result,) = results.wait_count(1)
    assert result.outcome == "review"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rotwatchd.web")]
    assert len(lines) == 1 and lines[0].startswith(f"web page off: cannot listen on 127.0.0.1:"
                                                   f"{port}: ")
    assert daemon.web is not None and daemon.web.server is None


def test_reloading_a_new_listen_address_moves_the_page(tmp_path: Path,
                                                       daemon_factory: Any) -> None:
    config = _config(tmp_path)
    daemon, _ = daemon_factory(config)
    assert daemon.web is not None and daemon.web.url is not None
    old = daemon.web.url
    assert call(old, "/status").status == 200
    with socket.socket() as probe:  # a free port for the new address
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon.reload(_config(tmp_path, listen=f"127.0.0.1:{port}", token=TOKEN))
    new = daemon.web.url
    assert new == f"http://127.0.0.1:{port}/"
    assert call(new, "/status").status == 401  # the new token holds at once
    with pytest.raises(ConnectionRefusedError):
        call(old, "/status")
    daemon.reload(_config(tmp_path, listen=None))
    assert daemon.web.server is None


def test_stopping_closes_idle_browser_connections(tmp_path: Path,
                                                 daemon_factory: Any) -> None:
    """A browser keeps connections open without sending anything; stop() must not wait
    for them (the leaked-thread check of the suite would fail)."""
    config = _config(tmp_path)
    daemon, _ = daemon_factory(config)
    assert daemon.web is not None and daemon.web.server is not None
    idle = socket.create_connection(("127.0.0.1", daemon.web.server.port))
    try:
        assert call(daemon.web.url or "", "/status").status == 200
        daemon.stop()
        assert idle.recv(1) == b""  # closed by the server
    finally:
        idle.close()


def test_without_web_listen_nothing_of_the_page_is_loaded(tmp_path: Path,
                                                         daemon_factory: Any) -> None:
    daemon, _ = daemon_factory(fast_config(tmp_path))
    assert daemon.web is None


def test_power_states_reach_the_metrics_and_the_asleep_history(
        tmp_path: Path, daemon_factory: Any) -> None:
    from helpers.fake_sysfs import make_cpufreq_tree

    from rotwatchd.power.runtime import PowerRuntime

    tree = make_cpufreq_tree(tmp_path / "sys-cpu", ("schedutil",))
    config = fast_config(tmp_path, web={"listen": "127.0.0.1:0"},
                         power={"idle_timeout": "300ms", "cpufreq_path": str(tree)})
    daemon, results = daemon_factory(config, start=False)
    power = PowerRuntime.attach(daemon)
    daemon.start()
    assert daemon.web is not None and daemon.web.url is not None
    assert power.sleep.wait_asleep(timeout=5)
    metrics = _metrics(daemon.web.url)
    assert metrics[("rotwatchd_power_state", (("state", "asleep"),))] == 1
    assert metrics[("rotwatchd_power_state", (("state", "awake"),))] == 0
    make_photo(config.inboxes[0].path / "a.jpg", correction=90)
    results.wait_count(1)  # woken for the file: the asleep interval is closed
    assert sum(m.asleep for m in daemon.web.history.minutes_until_now()) > 0
    assert power.sleep.wait_asleep(timeout=5)
    daemon.stop()


def test_a_reload_can_turn_the_page_on(tmp_path: Path, daemon_factory: Any) -> None:
    daemon, _ = daemon_factory(fast_config(tmp_path))
    assert daemon.web is None
    daemon.reload(_config(tmp_path))
    assert daemon.web is not None and daemon.web.url is not None
    assert call(daemon.web.url, "/review").status == 200


def test_a_long_queue_shows_the_oldest_first_and_says_how_many_more_wait(
        tmp_path: Path, daemon_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotwatchd.web import app

    monkeypatch.setattr(app, "PAGE_ITEMS", 2)
    daemon, _, base = _queued(daemon_factory, _config(tmp_path))
    page = call(base, "/review").text
    oldest = daemon.review.waiting()
    assert page.count('<form class="card"') == 2
    assert f'action="/review/{oldest[0].id}"' in page and "1 more wait" in page
    assert f'action="/review/{oldest[2].id}"' not in page


def test_an_animated_gif_has_a_preview_but_no_guess(tmp_path: Path,
                                                    daemon_factory: Any) -> None:
    config = _config(tmp_path)
    daemon, results = daemon_factory(config)
    frames = [Image.new("RGB", (60, 40), colour) for colour in ("red", "blue")]
    frames[0].save(config.inboxes[0].path / "anim.gif", save_all=True,
                   append_images=frames[1:], duration=100, loop=0)
    (result,) = results.wait_count(1)
    assert result.outcome == "review" and daemon.web is not None and daemon.web.url
    (item,) = daemon.review.waiting()
    assert item.guess is None
    page = call(daemon.web.url, "/review").text
    assert 'data-guess=""' in page and "turn guess" not in page
    thumb = call(daemon.web.url, f"/review/{item.id}/thumb")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    with Image.open(config.state_dir / "thumbs" / f"{item.sha256}-320.jpg") as image:
        assert image.size == (60, 40)
