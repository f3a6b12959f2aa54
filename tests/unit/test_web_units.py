"""The web page's pure parts and its configuration: the ``web`` keys, the per-minute history,
the SVG charts and the access rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fast_config

from rotwatchd.cli.main import main
from rotwatchd.config import ConfigError, load_config
from rotwatchd.web import guard
from rotwatchd.web.history import MinuteHistory
from rotwatchd.web.plots import bar_chart

TOKEN = "0123456789abcdef-token"


def _problems(tmp_path: Path, web: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        fast_config(tmp_path, web=web)
    return caught.value.problems


def test_web_defaults_to_loopback_and_null_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "rotwatchd.yaml").write_text("inboxes: [{path: inbox, output: out}]\n")
    config = load_config(tmp_path / "rotwatchd.yaml")
    assert config.web.listen == ("127.0.0.1", 8750) and config.web.token is None
    assert fast_config(tmp_path, web={"listen": None}).web.listen is None
    assert fast_config(tmp_path, web={"listen": "[::1]:0"}).web.listen == ("::1", 0)


def test_bad_web_values_name_the_file_and_key(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"listen": "raspberrypi:80"}) == [
        "test.yaml: web.listen: 'raspberrypi' is not an IP address (use e.g. 127.0.0.1, 0.0.0.0 "
        "or the address of one network interface)"]
    assert _problems(tmp_path, {"listen": "127.0.0.1:99999"})[0].startswith(
        "test.yaml: web.listen: '127.0.0.1:99999' is not IP:PORT")
    assert _problems(tmp_path, {"listn": "x"})[0].startswith("test.yaml: web.listn: unknown key")
    assert _problems(tmp_path, {"token": "short"})[0].startswith(
        "test.yaml: web.token: the token must have at least 16 characters")
    (tmp_path / "token").write_text(TOKEN)
    assert _problems(tmp_path, {"token": TOKEN, "token_file": "token"}) == [
        "test.yaml: web.token_file: set web.token or web.token_file, not both"]
    assert _problems(tmp_path, {"token_file": "missing"})[0].startswith(
        "test.yaml: web.token_file: cannot read ")


def test_listening_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    (line,) = _problems(tmp_path, {"listen": "0.0.0.0:8750"})
    assert line.startswith("test.yaml: web.listen: 0.0.0.0:8750 is not a loopback address: set "
                           "web.token or web.token_file")
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    config = fast_config(tmp_path, web={"listen": "0.0.0.0:8750", "token_file": "token"})
    assert config.web.token == TOKEN and TOKEN not in repr(config)


def test_run_refuses_a_listen_beyond_loopback_without_a_token_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "rotwatchd.yaml"
    path.write_text("inboxes: [{path: inbox, output: out}]\nweb: {listen: '0.0.0.0:8750'}\n")
    assert main(["run", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}: web.listen: 0.0.0.0:8750 is not a "
                                               "loopback address")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_history_counts_per_minute_and_forgets_what_left_the_window() -> None:
    clock = Clock(600.0)  # minute 10
    history = MinuteHistory(5, clock=clock)
    history.add_result("done", 0.02)
    history.add_result("review", 0.04)
    history.add_result("skipped", None)  # a no-op, not a file handled
    clock.now = 665.0  # minute 11
    history.add_result("quarantined", None)
    minutes = history.minutes_until_now()
    assert [m.index for m in minutes] == [7, 8, 9, 10, 11]
    ten, eleven = minutes[3], minutes[4]
    assert (ten.handled, ten.review, ten.timed) == (2, 1, 2)
    assert ten.mean_seconds == pytest.approx(0.03) and ten.seconds_max == pytest.approx(0.04)
    assert ten.review_share == 0.5 and eleven.handled == 1 and eleven.mean_seconds is None
    clock.now = 600.0 + 5 * 60  # minute 15: minute 10 left the window, its slot is reused
    history.add_result("done", 0.01)
    minutes = history.minutes_until_now()
    assert [m.index for m in minutes] == [11, 12, 13, 14, 15]
    assert [m.handled for m in minutes] == [1, 0, 0, 0, 1]


def test_history_spreads_time_asleep_over_the_minutes_it_covers() -> None:
    clock = Clock(630.0)
    history = MinuteHistory(10, clock=clock)
    history.power_state("asleep")
    history.power_state("asleep")  # repeated: still the same interval
    clock.now = 750.0
    history.power_state("awake")  # asleep 630..750: 30 s of minute 10, 60 of 11, 30 of 12
    clock.now = 800.0
    history.power_state("asleep")  # still open: counted up to now when read
    clock.now = 830.0
    asleep = {m.index: m.asleep for m in history.minutes_until_now()}
    assert asleep[10] == pytest.approx(30) and asleep[11] == pytest.approx(60)
    assert asleep[12] == pytest.approx(30)
    assert asleep[13] == pytest.approx(30)  # 800..830 of the open interval
    assert asleep[9] == 0


def test_bar_chart_scales_bars_and_escapes_labels() -> None:
    svg = bar_chart([None, 0, 5, 10], title="a <b>", unit="ms", span="4 min ago")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 2 and "a &lt;b&gt;" in svg and "style=" not in svg
    assert 'height="78.00"' in svg and 'height="39.00"' in svg  # 10 fills the plot, 5 half
    assert "nothing yet" in bar_chart([None, 0], title="t", unit="s")


def test_access_rules() -> None:
    assert guard.bearer("Bearer abc") == "abc" and guard.bearer("Basic abc") is None
    assert guard.token_ok(None, presented=None, cookie=None)
    assert guard.token_ok(TOKEN, presented=TOKEN, cookie=None)
    assert guard.token_ok(TOKEN, presented=None, cookie=guard.cookie_value(TOKEN))
    assert not guard.token_ok(TOKEN, presented=TOKEN + "x", cookie=TOKEN)
    for host in ("127.0.0.1:8750", "localhost:8750", "[::1]:8750", "127.0.0.2"):
        assert guard.host_is_loopback(host), host
    for host in ("example.com:8750", "192.168.1.2:8750", "", "[::1"):
        assert not guard.host_is_loopback(host), host
    same = {"host_header": "127.0.0.1:8750"}
    assert guard.cross_site(fetch_site=None, origin=None, **same) is None
    assert guard.cross_site(fetch_site="same-origin", origin="http://127.0.0.1:8750",
                            **same) is None
    assert guard.cross_site(fetch_site="cross-site", origin=None, **same)
    assert guard.cross_site(fetch_site=None, origin="http://127.0.0.1:8751", **same)
    assert not guard.csrf_ok("secret", None) and guard.csrf_ok("secret", "secret")


def test_review_page_percentages_round_down_so_unsure_never_reads_100() -> None:
    from rotwatchd.web.app import percent_text

    assert percent_text(0.9996) == "99 %"  # sent to review: not "100 %"
    assert percent_text(0.917) == "91 %"
    assert percent_text(0.29) == "29 %"  # 0.29 * 100 is 28.999... as a float
    assert percent_text(1.0) == "100 %" and percent_text(0.0) == "0 %"
    assert percent_text(None) == ""
