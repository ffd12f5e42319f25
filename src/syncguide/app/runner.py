"""One generation in a worker thread: its progress and previews as events, cancellable between steps.

The web app's request handlers are generators that must yield often (Gradio closes a cancelled one at its next
yield), while a pipeline call blocks for the whole run; so the call runs in a :class:`Run`'s thread and reports
through a queue. A cancelled run raises :class:`Cancelled` from the pipeline's step callback: it stops at the end
of the step in progress and writes nothing. One lock per model serialises runs (one generation per model at a
time), whatever Gradio's own queue does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class Cancelled(Exception):
    """The run was cancelled; nothing was written."""


@dataclass(frozen=True)
class Event:
    """What a run reports: ``kind`` is ``progress`` (``step`` of ``total`` done), ``preview`` (``images``, PIL),
    ``done`` (``result``), ``error`` (``error``) or ``idle`` (nothing new within the heartbeat)."""

    kind: str
    step: int = 0
    total: int = 0
    images: list | None = None
    result: Any = None
    error: BaseException | None = None


class Run:
    """``work(run)`` in a daemon thread holding ``lock``; ``work`` reports through :meth:`progress` and
    :meth:`preview` and should pass :meth:`step_callback` to the pipeline so that :meth:`cancel` takes effect."""

    def __init__(self, work: Callable[[Run], Any], lock: threading.Lock) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.started_at: float | None = None  # time.monotonic() when it got the model, and when it ended
        self.ended_at: float | None = None
        self.last_step = 0
        self.outcome: str | None = None  # done, cancelled or error
        self._work, self._lock = work, lock
        self._thread = threading.Thread(target=self._main, name="syncguide-run", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            with self._lock:
                self.started_at = time.monotonic()
                try:
                    self.check()  # cancelled while waiting for the model
                    result = self._work(self)
                finally:
                    self.ended_at = time.monotonic()
            self.outcome = "done"
            self.events.put(Event("done", result=result))
        except BaseException as error:  # reported to the request, which raises it there
            self.outcome = "cancelled" if isinstance(error, Cancelled) else "error"
            self.events.put(Event("error", error=error))
        finally:
            self.finished.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self.stopped.is_set():
            raise Cancelled("cancelled")

    def cancel(self) -> None:
        """Stop at the end of the step in progress (or before starting)."""
        self.stopped.set()

    def progress(self, step: int, total: int) -> None:
        """Report ``step`` of ``total`` done; raise :class:`Cancelled` if cancelled."""
        self.last_step = step
        self.events.put(Event("progress", step=step, total=total))
        self.check()

    def preview(self, step: int, images: list) -> None:
        """Report a preview (the pipeline's ``preview`` callback)."""
        self.events.put(Event("preview", step=step, images=images))

    def step_callback(self, total: int) -> Callable[..., dict]:
        """A diffusers ``callback_on_step_end`` reporting progress of ``total`` steps and honouring cancel."""

        def callback(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            self.progress(i + 1, total)
            return {}

        return callback

    def iterate(self, heartbeat: float = 0.2) -> Iterator[Event]:
        """The run's events until ``done`` or ``error`` (both yielded last), with an ``idle`` event whenever
        ``heartbeat`` seconds pass without one."""
        while True:
            try:
                event = self.events.get(timeout=heartbeat)
            except queue.Empty:
                yield Event("idle")
                continue
            yield event
            if event.kind in ("done", "error"):
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; whether it did."""
        return self.finished.wait(timeout)
