"""The disk budget: sizes, the split, Kafka's limits, the consumer's guard and the log caps.
Pure arithmetic and fakes; the one file test uses a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorpipe.consumer.guard import DiskGuard, HighWater
from sensorpipe.contracts.disk import (
    FLOOR_MIN,
    DiskPlan,
    FloorCheck,
    FsUsage,
    GiB,
    KafkaLimits,
    MiB,
    SizeError,
    Usage,
    check_floor,
    floor_bytes,
    parse_amount,
    parse_size,
    read_plan,
    write_plan,
)
from sensorpipe.runtime.disk import cap_logs, projection
from sensorpipe.settings import DatabaseSettings, DiskSettings


def test_sizes_in_decimal_and_binary_units() -> None:
    assert parse_size("50GB") == 50_000_000_000
    assert parse_size("512MiB") == 512 * MiB
    assert parse_size("1.5t") == 1_500_000_000_000
    assert parse_size("4096") == 4096
    for bad in ("", "GB", "12 parsecs", "-5GB", "5%"):
        with pytest.raises(SizeError):
            parse_size(bad)


def test_a_share_is_of_the_whole_filesystem() -> None:
    assert parse_amount("40%", 1000) == 400
    assert parse_amount("2GB", 1000) == 2_000_000_000
    for bad in ("0%", "101%"):
        with pytest.raises(SizeError):
            parse_amount(bad, 1000)


def test_bad_budget_settings_are_refused_in_one_line() -> None:
    with pytest.raises(ValidationError, match="not a size"):
        DiskSettings(budget="lots")
    with pytest.raises(ValidationError, match="at most 100%"):
        DiskSettings(floor="150%")
    assert DiskSettings(floor="auto").floor == "auto"


def test_retention_tiers_must_nest() -> None:
    with pytest.raises(ValidationError, match="retention must nest"):
        DatabaseSettings(retention_days=30, rollup_1m_days=10)
    assert DatabaseSettings(retention_days=3, rollup_1m_days=3, rollup_1h_days=3).rollup_1h_days == 3


def test_default_floor_is_the_larger_of_five_percent_and_2_gib() -> None:
    assert floor_bytes(None, 10 * GiB) == FLOOR_MIN
    assert floor_bytes("auto", 100 * GiB) == 5 * GiB
    assert floor_bytes("300MB", 10 * GiB) == 300_000_000


def test_the_budget_never_exceeds_what_the_disk_holds_above_the_floor() -> None:
    fs = FsUsage(total=100 * GiB, free=30 * GiB)
    plan = DiskPlan.make("40%", None, 0.25, fs, used_now=5 * GiB)
    # asked 40 GiB; the disk holds our 5 GiB plus 30 free, less the 5 GiB floor
    assert plan.requested == 40 * GiB and plan.effective == 30 * GiB and plan.clamped
    assert plan.kafka + plan.postgres + plan.logs == plan.effective
    assert plan.kafka == int((plan.effective - plan.logs) * 0.25)
    small = DiskPlan.make("10GB", "1GB", 0.5, fs, used_now=0)
    assert small.effective == 10_000_000_000 and not small.clamped
    full = DiskPlan.make("40%", None, 0.25, FsUsage(total=100 * GiB, free=GiB), used_now=0)
    assert full.effective == 0  # under the floor already: nothing may be written


def test_kafka_limits_hold_a_topic_inside_its_share() -> None:
    plan = DiskPlan.make("12GiB", "1GiB", 0.25, FsUsage(total=100 * GiB, free=90 * GiB), used_now=0)
    main, dlq = plan.kafka_limits(partitions=12, replication=1)
    for lim, share in ((main, plan.kafka * 0.9), (dlq, plan.kafka * 0.1)):
        # retention.bytes of closed segments plus one active segment, per partition
        assert 12 * (lim.retention_bytes + lim.segment_bytes) <= share
        assert lim.segment_bytes >= MiB
    assert main.topic_config() == {
        "retention.bytes": str(main.retention_bytes),
        "segment.bytes": str(main.segment_bytes),
    }
    # replicas count: three copies of each partition share the same bytes
    three = KafkaLimits.for_share(3 * GiB, 12, 3)
    assert 36 * (three.retention_bytes + three.segment_bytes) <= 3 * GiB
    # a tiny share still leaves a valid topic (one segment kept plus the active one)
    tiny = KafkaLimits.for_share(1000, 12, 1)
    assert tiny.segment_bytes == MiB and tiny.retention_bytes == MiB


def test_postgres_wal_follows_its_share() -> None:
    fs = FsUsage(total=1000 * GiB, free=1000 * GiB)
    assert DiskPlan.make("500MB", "1GB", 0.25, fs, 0).postgres_wal() == 64 * MiB
    assert DiskPlan.make("400GB", "1GB", 0.25, fs, 0).postgres_wal() == 4 * GiB


def test_the_plan_file_round_trips(tmp_path: Path) -> None:
    plan = DiskPlan.make("10GB", "1GB", 0.25, FsUsage(100 * GiB, 50 * GiB), 0)
    write_plan(tmp_path, plan, [tmp_path / "a", tmp_path / "b"])
    assert read_plan(tmp_path) == (plan, [tmp_path / "a", tmp_path / "b"], None)
    write_plan(tmp_path, plan, [tmp_path / "a"], pg_data=tmp_path / "pg")
    assert read_plan(tmp_path) == (plan, [tmp_path / "a"], tmp_path / "pg")
    assert read_plan(tmp_path / "none") is None


def test_the_floor_is_judged_per_filesystem() -> None:
    sizes = {Path("/small"): FsUsage(total=10 * GiB, free=GiB), Path("/big"): FsUsage(total=1000 * GiB, free=40 * GiB)}
    check = check_floor(list(sizes), "5%", sizes.__getitem__)
    # 5% of each filesystem: 0.5 GiB on the small one (1 GiB free: fine), 50 GiB on the big one
    assert check.least_free == GiB
    assert check.low == [(Path("/big"), 40 * GiB, 50 * GiB)]
    assert check_floor([], None) == FloorCheck(None, [])


def test_projection_says_when_each_share_fills() -> None:
    plan = DiskPlan.make("100GiB", "1GiB", 0.25, FsUsage(1000 * GiB, 900 * GiB), 0)
    lines = projection(plan, Usage(0, 0, 0), rate=5000)
    assert any("PostgreSQL reaches its share in about" in line for line in lines)
    assert any("two days of raw rows" in line for line in lines)  # 5,000/s needs far more than 74 GiB a day
    assert not any("two days" in line for line in projection(plan, Usage(0, 0, 0), rate=10))


class FakeDisk:
    """A filesystem whose free space the test sets."""

    def __init__(self, total: int, free: int) -> None:
        self.total, self.free, self.calls = total, free, 0

    def __call__(self, _path: Path) -> FsUsage:
        self.calls += 1
        return FsUsage(self.total, self.free)


def test_the_guard_holds_under_the_floor_and_lets_go_above_it() -> None:
    fs = FakeDisk(total=10 * GiB, free=5 * GiB)
    guard = DiskGuard([Path("/data")], floor="1GiB", check_s=2.0, probe=fs)
    assert guard.hold(0.0) is None and guard.free_bytes == 5 * GiB
    fs.free = GiB - 1
    assert guard.hold(1.0) is None  # not probed again before check_s
    reason = guard.hold(2.0)
    assert reason is not None and "under the floor" in reason
    fs.free = 2 * GiB
    assert guard.hold(4.0) is None
    assert fs.calls == 3


def test_the_guard_holds_while_the_store_is_over_budget() -> None:
    guard = DiskGuard([], floor=None, check_s=1.0, probe=FakeDisk(GiB, GiB))
    guard.over_budget = "over its share"
    assert guard.hold(0.0) == "over its share"
    guard.over_budget = None
    assert guard.hold(0.5) is None


def test_the_guard_holds_when_free_space_cannot_be_read() -> None:
    def broken(_p: Path) -> FsUsage:
        raise PermissionError("denied")

    guard = DiskGuard([Path("/data")], floor=None, check_s=1.0, probe=broken)
    reason = guard.hold(0.0)
    assert reason is not None and "unknown" in reason


def test_the_high_water_mark_leaves_room_for_two_intervals_of_growth() -> None:
    hw = HighWater(interval_s=30)
    share = 10 * GiB
    assert hw.mark(share) == int(share * 0.98)  # nothing seen yet: the minimum margin
    hw.observe(0, found=1 * GiB, kept=1 * GiB)
    hw.observe(30, found=1 * GiB + 300 * MiB, kept=1 * GiB + 300 * MiB)  # 10 MiB/s
    assert hw.mark(share) == share - 600 * MiB
    # a drop between passes is not growth; the last positive rate holds
    hw.observe(60, found=1 * GiB, kept=1 * GiB)
    assert hw.mark(share) == share - 600 * MiB
    # faster than the share can absorb: the mark stops at half the share
    hw.observe(90, found=9 * GiB, kept=2 * GiB)
    assert hw.mark(share) == share // 2


def test_logs_over_their_cap_are_rotated_in_place(tmp_path: Path) -> None:
    big, small, log4j = tmp_path / "api.log", tmp_path / "producer.log", tmp_path / "kafka-1.log"
    big.write_bytes(b"x" * 2000)
    small.write_bytes(b"y" * 10)
    log4j.write_bytes(b"z" * 2000)
    with open(big, "ab") as writer:  # a process that keeps its log open for appending
        assert cap_logs(tmp_path, cap=1000) == [big]
        writer.write(b"after")
    assert big.read_bytes() == b"after"
    assert (tmp_path / "api.log.1").read_bytes() == b"x" * 2000
    assert small.read_bytes() == b"y" * 10 and log4j.stat().st_size == 2000  # log4j rolls its own
