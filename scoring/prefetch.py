"""Iterating ahead in a background thread, so producing the next item (a database read, the
next chunk of COPY text) overlaps with the consumer's work on the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def prefetched(
    items: Iterator[T],
    *,
    depth: int,
    name: str,
) -> Iterator[T]:
    """Yield `items`, computed up to `depth` ahead by a thread named `name`. An exception in
    the thread is re-raised here. When the consumer stops early (it raised, or closed the
    generator) the thread notices at its next hand-over and ends: it never blocks on a full
    buffer nobody will empty."""
    done = object()
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
            hand_over(done)
        except BaseException as error:  # handed to the consumer, which re-raises it
            hand_over(error)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
