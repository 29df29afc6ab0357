"""api.deps.WriteLimiter: the per-client limit, and that clients gone quiet are forgotten
(an injected clock)."""

from __future__ import annotations

from sensorpipe.api.deps import WriteLimiter


def test_a_client_over_the_limit_waits_until_its_oldest_write_leaves_the_window() -> None:
    now = [0.0]
    lim = WriteLimiter(2, 10.0, clock=lambda: now[0])
    assert lim.check("a") is None and lim.check("a") is None
    now[0] = 4.0
    assert lim.check("a") == 6.0
    assert lim.check("b") is None  # per client
    now[0] = 10.5
    assert lim.check("a") is None


def test_clients_that_stopped_writing_are_forgotten() -> None:
    now = [0.0]
    lim = WriteLimiter(5, 10.0, clock=lambda: now[0])
    for i in range(1_000):
        now[0] = i * 0.001
        lim.check(f"10.0.{i // 250}.{i % 250}")
    assert lim.clients() == 1_000
    now[0] = 25.0
    lim.check("late")
    assert lim.clients() == 1
