"""Spreading independent pieces of database work over threads, each with its own connection.

On a 2-core machine one thread usually waits for PostgreSQL (whose work runs in its own
process) while another computes in NumPy, so a few threads keep both cores busy. Callers check
`leadscoring.db.parallel_connections_allowed()` first: inside a transaction the other
connections would not see its uncommitted rows."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection

Item = TypeVar("Item")
Result = TypeVar("Result")


def in_threads(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    *,
    workers: int,
    name: str,
    progress: Callable[[float], None] | None = None,
) -> list[Result]:
    """`work(item)` for every item in `workers` threads named `name-<i>`, each with its own
    connection (closed when the thread ends); returns the results in the order they finished.
    Progress is reported from the calling thread; the first error stops the other threads
    after their current item and is raised here."""
    todo: queue.SimpleQueue[Item] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                finished.put(work(item))
        except BaseException as error:  # handed to the calling thread, which raises it
            stop.set()
            finished.put(error)
        finally:
            connection.close()  # this thread's own connection

    threads = [
        threading.Thread(target=run, name=f"{name}-{i}", daemon=True)
        for i in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    results: list[Result] = []
    try:
        for k in range(len(items)):
            result = finished.get()
            if isinstance(result, BaseException):
                raise result
            results.append(result)
            if progress:
                progress((k + 1) / len(items))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return results
