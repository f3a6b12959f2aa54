"""SleepController: the state machine with an injected clock, then the real thread with real
time against a fake sysfs tree."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from helpers.fake_sysfs import make_cpufreq_tree, read_governors
from PIL import Image

from rotwatchd.config import PowerConfig
from rotwatchd.model.base import Prediction
from rotwatchd.power.governor import GovernorControl
from rotwatchd.power.sleep import PowerState, SleepController
from rotwatchd.service.classifier_pool import ClassifierPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingClassifier:
    """Stands in for the LiteRT model at the one boundary the controller touches: close()."""

    def __init__(self) -> None:
        self.closed = False

    def predict(self, image: Image.Image) -> Prediction:
        return Prediction.from_probabilities((1.0, 0.0, 0.0, 0.0))

    def close(self) -> None:
        self.closed = True


class Queue:
    def __init__(self) -> None:
        self.depth = 0

    def __call__(self) -> int:
        return self.depth


def settings(root: Path, **overrides: object) -> PowerConfig:
    values: dict[str, object] = {"idle_timeout": 60.0, "cpufreq_path": root}
    values.update(overrides)
    return PowerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_cpufreq_tree(tmp_path / "cpu", ("schedutil", "ondemand"))


def controller(
    tree: Path, clock: FakeClock, queue: Queue | None = None, **overrides: object
) -> SleepController:
    s = settings(tree, **overrides)
    ctl = SleepController(s, GovernorControl(s.cpufreq_path), queue or Queue(), clock=clock)
    assert ctl.governors is not None
    ctl.governors.remember_originals()
    return ctl


def test_sleeps_exactly_at_idle_timeout(tree: Path) -> None:
    clock = FakeClock()
    ctl = controller(tree, clock)
    assert ctl.step() == 60.0
    clock.advance(59.5)
    assert ctl.step() == pytest.approx(0.5)
    assert ctl.state is PowerState.AWAKE and read_governors(tree) == ["schedutil", "ondemand"]
    clock.advance(0.5)
    ctl.step()
    assert ctl.state is PowerState.ASLEEP
    assert read_governors(tree) == ["powersave", "powersave"]
    assert ctl.step() is None  # asleep: wait for a notification, no timer at all


def test_queued_or_running_work_prevents_sleep(tree: Path) -> None:
    clock, queue = FakeClock(), Queue()
    ctl = controller(tree, clock, queue)
    queue.depth = 2
    clock.advance(3600)
    ctl.step()
    assert ctl.state is PowerState.AWAKE
    queue.depth = 0
    assert ctl.begin_work(timeout=1)
    clock.advance(3600)
    ctl.step()
    assert ctl.state is PowerState.AWAKE
    ctl.end_work()  # restarts the idle timer
    assert ctl.step() == 60.0


def test_new_file_restores_originals_and_measures_latency(tree: Path) -> None:
    clock = FakeClock()
    ctl = controller(tree, clock)
    clock.advance(60)
    ctl.step()
    event_time = clock.now + 5
    clock.advance(5.010)
    ctl.activity(event_time)
    assert ctl.state is PowerState.WAKING
    ctl.step()
    assert ctl.state is PowerState.AWAKE
    assert read_governors(tree) == ["schedutil", "ondemand"]
    assert ctl.begin_work(timeout=1)
    clock.advance(0.020)
    assert ctl.inference_started() == pytest.approx(0.030)
    assert ctl.inference_started() is None  # only the first inference after a wake counts
    ctl.end_work()
    status = ctl.status()
    assert status["wakes"] == 1 and status["sleeps"] == 1
    assert status["wake_latency_ms"]["p50"] == pytest.approx(30.0)
    assert status["governors"] == {"policy0": "schedutil", "policy1": "ondemand"}


def test_active_governor_overrides_the_originals_on_wake(tree: Path) -> None:
    clock = FakeClock()
    ctl = controller(tree, clock, active_governor="performance")
    clock.advance(60)
    ctl.step()
    ctl.activity()
    ctl.step()
    assert read_governors(tree) == ["performance", "performance"]
    ctl.close()
    assert read_governors(tree) == ["schedutil", "ondemand"]  # exit restores the originals


def test_model_released_while_asleep_and_reloaded_on_wake(tree: Path) -> None:
    clock = FakeClock()
    made: list[CountingClassifier] = []

    def factory() -> CountingClassifier:
        made.append(CountingClassifier())
        return made[-1]

    slot = ClassifierPool(factory)
    slot.get()
    s = settings(tree, release_model_when_idle=True)
    ctl = SleepController(s, GovernorControl(tree), Queue(), model=slot, clock=clock)
    clock.advance(60)
    ctl.step()
    assert not slot.loaded and made[0].closed and ctl.status()["model_released"]
    ctl.activity()
    ctl.step()
    assert slot.loaded and slot.loads == 2 and not made[1].closed


def test_model_kept_when_release_is_off(tree: Path) -> None:
    clock = FakeClock()
    slot = ClassifierPool(CountingClassifier)
    slot.get()
    ctl = SleepController(settings(tree), GovernorControl(tree), Queue(), model=slot, clock=clock)
    clock.advance(60)
    ctl.step()
    assert ctl.state is PowerState.ASLEEP and slot.loaded and slot.loads == 1


def test_zero_timeout_never_sleeps(tree: Path) -> None:
    clock = FakeClock()
    ctl = controller(tree, clock, idle_timeout=0)
    clock.advance(10**6)
    assert ctl.step() is None and ctl.state is PowerState.AWAKE


def test_no_cpufreq_still_parks_and_wakes(tmp_path: Path) -> None:
    clock = FakeClock()
    ctl = controller(tmp_path / "absent", clock)
    clock.advance(60)
    ctl.step()
    ctl.activity()
    ctl.step()
    assert ctl.state is PowerState.AWAKE and ctl.status()["governors"] == {}


def test_without_cpufreq_the_log_names_no_governor(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rotwatchd.power")
    clock = FakeClock()
    ctl = controller(tmp_path / "absent", clock)
    clock.advance(60)
    ctl.step()
    lines = [r.getMessage() for r in caplog.records if "sleeping" in r.getMessage()]
    assert lines == ["power: idle for 60s, sleeping"]


def test_with_cpufreq_the_sleep_line_names_the_governor(tree: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rotwatchd.power")
    clock = FakeClock()
    ctl = controller(tree, clock)
    clock.advance(60)
    ctl.step()
    lines = [r.getMessage() for r in caplog.records if "sleeping" in r.getMessage()]
    assert lines == ["power: idle for 60s, sleeping (governor powersave)"]


# -- the real thread, real time ------------------------------------------------------------
def test_thread_sleeps_within_timeout_plus_one_second_and_wakes_for_work(tree: Path) -> None:
    s = settings(tree, idle_timeout=0.4)
    ctl = SleepController(s, GovernorControl(tree), Queue())
    started = time.monotonic()
    ctl.start()
    try:
        assert ctl.wait_asleep(timeout=s.idle_timeout + 1.0)
        assert time.monotonic() - started <= s.idle_timeout + 1.0
        assert read_governors(tree) == ["powersave", "powersave"]

        # A worker holding a file parks in begin_work until the controller has woken up.
        entered = threading.Event()
        governors_seen: list[list[str]] = []

        def worker() -> None:
            if ctl.begin_work(timeout=10):
                governors_seen.append(read_governors(tree))
                ctl.inference_started()
                ctl.end_work()
            entered.set()

        thread = threading.Thread(target=worker)
        ctl.activity()
        thread.start()
        assert entered.wait(10)
        thread.join(10)
        assert governors_seen == [["schedutil", "ondemand"]]
        assert ctl.status()["wake_latency_ms"]["count"] == 1

        # Idle again: back to sleep, then shut down while asleep.
        assert ctl.wait_asleep(timeout=s.idle_timeout + 1.0)
        assert read_governors(tree) == ["powersave", "powersave"]
    finally:
        ctl.close()
    assert read_governors(tree) == ["schedutil", "ondemand"]
    assert not any(t.name == "rotwatchd-sleep" for t in threading.enumerate())


def test_close_releases_a_parked_worker(tree: Path) -> None:
    clock = FakeClock()
    ctl = controller(tree, clock)
    clock.advance(60)
    ctl.step()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(ctl.begin_work(timeout=30)))
    thread.start()
    # Nobody runs step(), so the wake never completes: the worker stays parked...
    assert not ctl.wait_awake(timeout=0.2) and thread.is_alive()
    ctl.close()  # ...until shutdown lets it go, without counting it busy
    thread.join(10)
    assert result == [False]
    assert read_governors(tree) == ["schedutil", "ondemand"]


def test_falling_asleep_gives_the_free_heap_back_each_time(tree: Path) -> None:
    clock, returned = FakeClock(), []
    s = settings(tree)
    ctl = SleepController(s, GovernorControl(s.cpufreq_path), Queue(), clock=clock,
                          return_heap=lambda: returned.append(clock.now))
    assert ctl.governors is not None
    ctl.governors.remember_originals()
    clock.advance(59)
    ctl.step()
    assert returned == []  # awake: the heap is left to the work
    clock.advance(1)
    ctl.step()
    assert ctl.state is PowerState.ASLEEP and returned == [clock.now]
    ctl.step()
    assert len(returned) == 1  # once per fall asleep, not on every look
    ctl.activity(clock.now)
    ctl.step()
    clock.advance(60)
    ctl.step()
    assert ctl.state is PowerState.ASLEEP and len(returned) == 2


def test_the_free_heap_goes_back_to_the_system_for_real() -> None:
    """glibc's malloc_trim on this Linux: resident memory freed by Python falls back."""
    import ctypes.util

    from rotwatchd.power.heap import return_free_heap

    if "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("musl has no malloc_trim")
    import psutil

    me = psutil.Process()
    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MiB in small heap blocks
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    held = me.memory_info().rss
    del blocks[::2]  # every other block: freed, but the heap's top stays in use
    del block
    before = me.memory_info().rss
    assert return_free_heap() is True
    after = me.memory_info().rss
    assert after < before - 32 * 1024 * 1024, (held, before, after)
    del blocks
