"""The live pipeline configuration kept in the backend's configuration store.

The producer polls it (rate, sensors, ratios, bursts); the consumer polls the slowdown
knob. The API validates every update against this model, so a stored configuration is
always valid; readers still validate what they fetch and keep the last good one if not.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(default=5000.0, ge=0, le=1_000_000, description="Producer target, events/s.")
    sensors: int = Field(default=2000, ge=1, le=100_000, description="Simulated sensors.")
    duplicate_ratio: float = Field(default=0.0, ge=0, le=1, description="Share of events re-sent as-is.")
    poison_ratio: float = Field(default=0.0, ge=0, le=1, description="Share of malformed messages sent.")
    burst_multiplier: float = Field(default=1.0, ge=1, le=100, description="Rate factor during a burst.")
    burst_every_s: float = Field(default=0.0, ge=0, le=86_400, description="Seconds between bursts; 0: none.")
    burst_duration_s: float = Field(default=0.0, ge=0, le=3_600, description="Length of each burst.")
    consumer_slowdown_ms: int = Field(
        default=0, ge=0, le=60_000, description="Artificial database latency per consumer batch."
    )
    consumer_batch_max: int | None = Field(
        default=None, ge=1, le=100_000, description="Caps the consumer batch size while set."
    )

    @field_validator("burst_duration_s")
    @classmethod
    def _burst_fits_its_period(cls, v: float, info: ValidationInfo) -> float:
        every = info.data.get("burst_every_s", 0.0)
        if every and v >= every:
            raise ValueError("burst_duration_s must be shorter than burst_every_s")
        return v
