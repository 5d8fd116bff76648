"""`scoring.prefetch.prefetched`: items in order, the producer's error raised to the consumer,
and a consumer that stops early never leaves the producing thread blocked."""

import threading
import time

import pytest

from scoring.prefetch import prefetched


def _alive(name: str) -> bool:
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


def test_items_come_in_order_and_the_thread_ends():
    assert list(prefetched(iter(range(50)), depth=2, name="prefetch-order")) == list(range(50))
    assert not _alive("prefetch-order")


def test_an_error_in_the_producer_is_raised_to_the_consumer():
    def items():
        yield 1
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for item in prefetched(items(), depth=1, name="prefetch-error"):
            got.append(item)
    assert got == [1]
    assert not _alive("prefetch-error")


def test_a_consumer_that_stops_early_does_not_leave_the_producer_blocked():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetched(items(), depth=2, name="prefetch-stop")
    assert next(stream) == 0
    time.sleep(0.3)  # the producer fills the buffer and waits to hand over the next item
    # Closed from another thread, so a producer that never notices fails the test instead
    # of hanging it.
    closer = threading.Thread(target=stream.close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive() and not _alive("prefetch-stop")
    assert len(produced) < 10  # it stopped, not ran on to the end


def test_a_consumer_that_raises_stops_the_producer():
    with pytest.raises(RuntimeError, match="consumer failed"):
        for _ in prefetched(iter(range(10**6)), depth=2, name="prefetch-raise"):
            raise RuntimeError("consumer failed")
    assert not _alive("prefetch-raise")
