"""Simulated sensors: stable ids, a kind each, and a realistic signal per kind.

A reading is `base + daily cycle + slow drift + noise`, with rare spikes. The drift is a
mean-reverting random walk, so a sensor wanders but stays plausible for its kind. Every
sensor's shape is derived from (seed, index), so a restarted producer simulates the same
fleet. State is kept column-wise in numpy arrays, and readings are drawn a round of the
fleet at a time: this is the producer's hot path, one reading per event. Computed one by one
in Python a reading cost 1.8 us, most of the producer's own time per event; in rounds of
1,000 sensors it costs 0.11-0.13 us (200,000 readings, timed in-process).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np


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
# A sensor's fixed shape: baseline, daily amplitude, daily phase, noise, drift step, spike size
# and 10**decimals (the rounding scale).
_PARAMS = ("base", "cycle", "phase", "noise", "drift_step", "spike", "scale")


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
        # per sensor, by slot: one row per _PARAMS entry, and the drift's current value (the
        # only state that changes)
        self._params = np.zeros((len(_PARAMS), 0))
        self._drift = np.zeros(0)
        rng = random.Random(seed * 1_000_003 + shard)
        self._gauss = np.fromiter((rng.gauss(0.0, 1.0) for _ in range(_TABLE)), dtype=np.float64, count=_TABLE)
        self._unif = np.fromiter((rng.random() for _ in range(_TABLE)), dtype=np.float64, count=_TABLE)
        self._draw = 0

    def resize(self, total: int) -> None:
        """Own the sensors 0..total-1 that fall in this shard; existing ones keep their state."""
        wanted = range(self.shard, total, self.shards)
        keep = min(len(wanted), len(self.indices))
        del self.indices[keep:], self.ids[keep:], self.keys[keep:]
        new: list[tuple[float, ...]] = []
        for i in wanted[keep:]:
            k = kind_of(i)
            r = random.Random(self.seed * 7_919 + i)
            sid = sensor_id(i)
            self.indices.append(i)
            self.ids.append(sid)
            self.keys.append(sid.encode())
            # in _PARAMS order; the draws of r are taken in this order
            new.append(
                (
                    r.uniform(*k.base),
                    k.cycle * r.uniform(0.5, 1.0),
                    r.uniform(0, 2 * math.pi),
                    k.noise,
                    k.drift,
                    k.spike,
                    10.0**k.decimals,
                )
            )
        fresh = np.array(new, dtype=np.float64).reshape(len(new), len(_PARAMS)).T
        self._params = np.concatenate((self._params[:, :keep], fresh), axis=1)
        self._drift = np.concatenate((self._drift[:keep], np.zeros(len(new))))

    def __len__(self) -> int:
        return len(self.indices)

    def readings(self, slot: int, n: int, t: float) -> list[float]:
        """The next `n` readings of the round-robin that starts at `slot`, at epoch time `t`
        (seconds): slot, slot+1, ..., wrapping after the last sensor.

        Computed a round at a time: within a round each sensor appears once, so its drift
        (the one value carried from reading to reading) is updated in one array operation.
        Each reading takes the next draw of the shared tables, in round-robin order.
        """
        size = len(self.indices)
        out: list[float] = []
        if size == 0:
            return out
        angle = t * _OMEGA
        while n > 0:
            end = min(size, slot + n)
            m = end - slot
            draws = np.arange(self._draw, self._draw + m) & _MASK
            self._draw = (self._draw + m) & _MASK
            base, cycle, phase, noise, step, spike, scale = self._params[:, slot:end]  # row views
            drift = self._drift[slot:end] * 0.999 + (self._unif[draws] - 0.5) * step
            self._drift[slot:end] = drift
            v = base + cycle * np.sin(phase + angle) + drift + self._gauss[draws] * noise
            s = self._unif[(draws + _SPIKE_OFFSET) & _MASK]
            spiked = s < SPIKE_P
            if spiked.any():
                v += np.where(spiked, np.where(s < 0.7 * SPIKE_P, 1.0, -1.0), 0.0) * spike  # 70% up
            out += (np.rint(v * scale) / scale).tolist()  # rint rounds half to even, like round()
            n -= m
            slot = 0 if end == size else end
        return out
