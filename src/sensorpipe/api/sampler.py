"""A background thread that calls one step every `interval_s` until stopped: the API's
samplers (the disk watch, the pipeline history) each own one, so that no request waits on
their I/O. A step that raises is logged and the next one runs on time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("sensorpipe.api.sampler")


class Sampler:
    def __init__(self, name: str, interval_s: float, step: Callable[[], object]) -> None:
        self.name, self.interval_s, self.step = name, interval_s, step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as e:  # a sampler must outlive any one failure
                log.warning("%s failed: %s", self.name, e)
            self._stop.wait(self.interval_s)
