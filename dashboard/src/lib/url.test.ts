import { describe, expect, it } from "vitest";
import { parseState, resolveRange, serializeState } from "./url";

describe("URL state", () => {
  it("round-trips filters so a view can be shared", () => {
    const s = parseState("?view=explorer&sensor=sensor-00001&sensor=sensor-00002&range=24h");
    expect(s).toEqual({ view: "explorer", sensors: ["sensor-00001", "sensor-00002"], preset: "24h" });
    expect(parseState(serializeState(s))).toEqual(s);
  });

  it("keeps a custom range and drops bad input", () => {
    const s = parseState("?view=nope&sensor=bad%20id&sensor=ok-1&range=custom&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z");
    expect(s.view).toBe("overview");
    expect(s.sensors).toEqual(["ok-1"]);
    expect(resolveRange(s)).toEqual({ start: "2026-01-01T00:00:00.000Z", end: "2026-01-02T00:00:00.000Z" });
    expect(parseState("?range=custom&start=garbage&end=x").preset).toBe("1h");
  });

  it("resolves presets against now", () => {
    const now = new Date("2026-11-27T12:00:00Z");
    expect(resolveRange({ view: "explorer", sensors: [], preset: "5m" }, now)).toEqual({
      start: "2026-11-27T11:55:00.000Z",
      end: "2026-11-27T12:00:00.000Z",
    });
  });
});
