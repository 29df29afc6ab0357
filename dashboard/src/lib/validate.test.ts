import { describe, expect, it } from "vitest";
import { apiFieldErrors, toConfig, validateConfig } from "./validate";

const good = {
  rate: "5000", sensors: "2000", duplicate_ratio: "0.1", poison_ratio: "0", burst_multiplier: "1",
  burst_every_s: "0", burst_duration_s: "0", consumer_slowdown_ms: "0", consumer_batch_max: "",
};

describe("config validation (limits read from the API's OpenAPI schema)", () => {
  it("accepts a valid configuration", () => {
    expect(validateConfig(good)).toEqual({});
    expect(toConfig(good)).toMatchObject({ rate: 5000, sensors: 2000, consumer_batch_max: null });
  });

  it("names each bad field", () => {
    const errors = validateConfig({ ...good, rate: "-1", sensors: "1.5", duplicate_ratio: "2", poison_ratio: "x", burst_multiplier: "" });
    expect(errors.rate).toMatch(/at least 0/);
    expect(errors.sensors).toMatch(/whole number/);
    expect(errors.duplicate_ratio).toMatch(/at most 1/);
    expect(errors.poison_ratio).toMatch(/number/);
    expect(errors.burst_multiplier).toBe("required");
  });

  it("maps FastAPI's 422 detail to fields", () => {
    const body = { detail: [{ loc: ["body", "burst_duration_s"], msg: "Value error, too long", type: "value_error" }] };
    expect(apiFieldErrors(body)).toEqual({ burst_duration_s: "Value error, too long" });
    expect(apiFieldErrors({ detail: "a valid admin token is required" })).toEqual({ form: "a valid admin token is required" });
  });
});
