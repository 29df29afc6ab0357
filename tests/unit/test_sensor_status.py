"""The fleet's per-sensor no-data alarm: live, late past 3 usual intervals (+5 s), silent past
10 (+15 s); a sensor whose interval is unknown is judged against the default."""

from __future__ import annotations

from sensorpipe.api.routes.sensors import sensor_status
from sensorpipe.storage.queries import DEFAULT_INTERVAL_S


def test_quiet_time_is_judged_against_the_usual_interval() -> None:
    assert sensor_status(0.0, 1.0) == "live"
    assert sensor_status(8.0, 1.0) == "live"
    assert sensor_status(8.1, 1.0) == "late"
    assert sensor_status(25.0, 1.0) == "late"
    assert sensor_status(25.1, 1.0) == "silent"
    # a sensor sending once a minute is not late after 90 s, as a fast one would be
    assert sensor_status(90.0, 60.0) == "live"
    assert sensor_status(90.0, 2.0) == "silent"


def test_an_unknown_interval_takes_the_default() -> None:
    assert sensor_status(3 * DEFAULT_INTERVAL_S + 5, None) == "live"
    assert sensor_status(3 * DEFAULT_INTERVAL_S + 6, None) == "late"
    assert sensor_status(10 * DEFAULT_INTERVAL_S + 16, None) == "silent"
