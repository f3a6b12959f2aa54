"""ClassifierPool: exclusive leases, reuse, release and reload for the SleepController."""

from __future__ import annotations

import threading

from conftest import MarkerClassifier

from rotwatchd.classifier_pool import ClassifierPool


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
