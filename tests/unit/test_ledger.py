"""The producer ledger as the audit reads it: acknowledged events stamped before the raw
horizon count as dropped by retention, never as lost."""

from __future__ import annotations

from pathlib import Path

from sensorpipe.producer.ledger import Ledger
from sensorpipe.proof.audit import Ledgers


def test_events_before_the_horizon_are_dropped_not_expected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    led = Ledger(path)
    led.record("e", "old", "acked", "2026-11-20T23:59:59.999Z")
    led.record("e", "new", "acked", "2026-11-21T00:00:00.000Z")
    led.record("e", "old-failed", "failed", "2026-11-20T10:00:00.000Z")
    led.record("d", "twice", "acked", "2026-11-20T12:00:00.000Z")
    led.record("e", "twice", "acked", "2026-11-21T12:00:00.000Z")  # a later copy: still expected
    led.record("p", "malformed_json", "acked")
    led.record("e", "unstamped", "acked")  # a ledger line without a timestamp (older producers)
    led.close()
    read = Ledgers.read([path], horizon="2026-11-21T00:00:00.000Z")
    assert read.acked == {"new", "twice", "unstamped"}
    assert read.dropped == {"old"}
    assert read.poison_acked["malformed_json"] == 1
    everything = Ledgers.read([path])
    assert everything.acked == {"old", "new", "twice", "unstamped"} and not everything.dropped
