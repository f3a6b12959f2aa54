"""ClassifierPool: exclusive leases, reuse, release and reload for the SleepController."""

from __future__ import annotations

import threading

from helpers import MarkerClassifier

from rotwatchd.service.classifier_pool import ClassifierPool


def test_concurrent_leases_get_distinct_instances_and_reuse_them() -> None:
    pool = ClassifierPool(MarkerClassifier)
    inside = threading.Barrier(3)
    seen: list[int] = []

    def use() -> None:
        with pool.lease() as classifier:
            seen.append(id(classifier))
            inside.wait(10)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(10)
    for t in threads:
        t.join()
    assert len(set(seen)) == 2 and pool.loads == 2
    with pool.lease() as again:
        assert id(again) in seen
    assert pool.loads == 2


def test_release_closes_everything_and_reload_loads_one() -> None:
    made: list[MarkerClassifier] = []

    def factory() -> MarkerClassifier:
        made.append(MarkerClassifier())
        return made[-1]

    pool = ClassifierPool(factory)
    pool.get()
    assert pool.loaded and pool.loads == 1
    with pool.lease() as leased:
        pool.release()  # released while in use: closed when handed back
        assert not leased.closed
    assert leased.closed and not pool.loaded
    pool.reload()
    assert pool.loaded and pool.loads == 2
    pool.reload()
    assert pool.loads == 2


def test_a_limited_pool_makes_the_next_worker_wait_for_the_one_instance() -> None:
    """limit=1 (the daemon's): a second worker waits until the first gives the classifier
    back, then uses that same instance; a factory that fails frees its slot."""
    pool = ClassifierPool(MarkerClassifier, limit=1)
    holding, second_waiting = threading.Event(), threading.Event()
    release_first = threading.Event()
    used: list[int] = []

    def first() -> None:
        with pool.lease() as classifier:
            used.append(id(classifier))
            holding.set()
            release_first.wait(10)

    def second() -> None:
        holding.wait(10)
        second_waiting.set()
        with pool.lease() as classifier:
            used.append(id(classifier))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    second_waiting.wait(10)
    threads[1].join(0.2)  # still blocked while the first holds the only instance
    assert threads[1].is_alive() and len(used) == 1
    release_first.set()
    for t in threads:
        t.join(10)
    assert pool.loads == 1 and len(set(used)) == 1 and len(used) == 2

    calls: list[int] = []

    def failing() -> MarkerClassifier:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model missing")
        return MarkerClassifier()

    broken = ClassifierPool(failing, limit=1)
    try:
        with broken.lease():
            pass
    except RuntimeError:
        pass
    with broken.lease() as classifier:  # the failed build did not keep the one slot
        assert isinstance(classifier, MarkerClassifier)
