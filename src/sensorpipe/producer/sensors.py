"""Simulated sensors: stable ids, a kind each, and a realistic signal per kind.

A reading is `base + daily cycle + slow drift + noise`, with rare spikes. The drift is a
mean-reverting random walk, so a sensor wanders but stays plausible for its kind. Every
sensor's shape is derived from (seed, index), so a restarted producer simulates the same
fleet. State is kept column-wise in lists: this is the producer's hot path.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    base: tuple[float, float]  # range of a sensor's baseline
    cycle: float  # daily amplitude
    noise: float  # standard deviation of the noise
    drift: float  # step of the random walk
    spike: float  # size of a spike
    decimals: int


KINDS = (
    Kind("temperature", (15.0, 30.0), 4.0, 0.15, 0.02, 12.0, 2),
    Kind("humidity", (30.0, 70.0), 10.0, 0.5, 0.05, 25.0, 1),
    Kind("pressure", (990.0, 1030.0), 2.0, 0.3, 0.05, 15.0, 1),
    Kind("co2", (400.0, 900.0), 80.0, 5.0, 0.5, 600.0, 0),
    Kind("vibration", (0.5, 3.0), 0.3, 0.08, 0.005, 9.0, 3),
)
SPIKE_P = 0.0005
_DAY_S = 86_400.0
_OMEGA = 2 * math.pi / _DAY_S
# Random draws come from tables made once per fleet: one table lookup costs less than a
# third of a random() call, and this is the producer's hot path (5 calls per reading
# before). A sensor walks the tables with the fleet's stride, so its own noise sequence
# repeats only after _TABLE / gcd(fleet size, _TABLE) readings (4,096 for 2,000 sensors,
# about 27 minutes at the demo rate), under a drift and a daily cycle that do not.
_TABLE = 1 << 17
_MASK = _TABLE - 1
_SPIKE_OFFSET = 7_919  # the spike draw is taken apart from the drift draw: independent


def sensor_id(index: int) -> str:
    return f"sensor-{index:05d}"


def kind_of(index: int) -> Kind:
    return KINDS[index % len(KINDS)]


class Fleet:
    """The sensors of one shard (index % shards == shard), with their signal state."""

    def __init__(self, seed: int, shard: int = 0, shards: int = 1) -> None:
        self.seed = seed
        self.shard = shard
        self.shards = shards
        self.indices: list[int] = []
        self.ids: list[str] = []
        self.keys: list[bytes] = []
        self._base: list[float] = []
        self._cycle: list[float] = []
        self._phase: list[float] = []
        self._noise: list[float] = []
        self._drift_step: list[float] = []
        self._spike: list[float] = []
        self._scale: list[float] = []
        self._drift: list[float] = []
        rng = random.Random(seed * 1_000_003 + shard)
        self._gauss = array("d", (rng.gauss(0.0, 1.0) for _ in range(_TABLE)))
        self._unif = array("d", (rng.random() for _ in range(_TABLE)))
        self._draw = 0

    def resize(self, total: int) -> None:
        """Own the sensors 0..total-1 that fall in this shard; existing ones keep their state."""
        wanted = [i for i in range(self.shard, total, self.shards)]
        have = len(self.indices)
        if len(wanted) < have:
            del self.indices[len(wanted) :], self.ids[len(wanted) :], self.keys[len(wanted) :]
            for col in (
                self._base,
                self._cycle,
                self._phase,
                self._noise,
                self._drift_step,
                self._spike,
                self._scale,
                self._drift,
            ):
                del col[len(wanted) :]
            return
        for i in wanted[have:]:
            k = kind_of(i)
            r = random.Random(self.seed * 7_919 + i)
            self.indices.append(i)
            sid = sensor_id(i)
            self.ids.append(sid)
            self.keys.append(sid.encode())
            self._base.append(r.uniform(*k.base))
            self._cycle.append(k.cycle * r.uniform(0.5, 1.0))
            self._phase.append(r.uniform(0, 2 * math.pi))
            self._noise.append(k.noise)
            self._drift_step.append(k.drift)
            self._spike.append(k.spike)
            self._scale.append(10.0**k.decimals)
            self._drift.append(0.0)

    def __len__(self) -> int:
        return len(self.indices)

    def reading(self, slot: int, t: float) -> float:
        """The next reading of the sensor in `slot` at epoch time `t` (seconds)."""
        i = self._draw
        self._draw = (i + 1) & _MASK
        u = self._unif[i]
        d = self._drift[slot] * 0.999 + (u - 0.5) * self._drift_step[slot]
        self._drift[slot] = d
        v = (
            self._base[slot]
            + self._cycle[slot] * math.sin(self._phase[slot] + t * _OMEGA)
            + d
            + self._gauss[i] * self._noise[slot]
        )
        s = self._unif[(i + _SPIKE_OFFSET) & _MASK]
        if s < SPIKE_P:
            v += self._spike[slot] * (1 if s < 0.7 * SPIKE_P else -1)  # 70% upward
        scale = self._scale[slot]
        return round(v * scale) / scale  # round(x) is C; round(x, n) goes through a string
