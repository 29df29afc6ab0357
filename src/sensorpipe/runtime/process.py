"""Helpers shared by every long-running process: logging, stop signals, the metrics server."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per config poll is noise


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so the process can finish what it has in hand."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("sensorpipe").info("received %s; finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def freeze_startup_heap() -> None:
    """Move everything allocated so far (modules, settings, clients) out of the cyclic
    collector's reach: it lives as long as the process, and a full collection would walk it
    again every time, pausing the API's event loop and spending the consumer's CPU."""
    gc.collect()
    gc.freeze()


def serve_metrics(registry: CollectorRegistry, port: int, what: str, host: str = "127.0.0.1") -> None:
    """Expose `registry` on host:port; a busy port costs the metrics, not the process."""
    if port == 0:
        return
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        logging.getLogger("sensorpipe").warning("%s metrics not served: port %d: %s", what, port, e)
