import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Sparkline, sparkPath } from "./Sparkline";

describe("sparkPath", () => {
  it("starts a new subpath after each missing minute, so a gap is a break", () => {
    const d = sparkPath([1, 2, null, 3, 4], 40, 10);
    expect(d.match(/M/g)).toHaveLength(2);
    expect(d.match(/L/g)).toHaveLength(2);
    expect(d.startsWith("M0.0 9.0")).toBe(true); // the lowest value at the bottom
    expect(d).toContain("M30.0"); // the run after the gap starts at its own minute
  });

  it("draws a lone minute as a dot", () => {
    expect(sparkPath([null, 3, null, 4], 30, 10)).toBe("M10.0 9.0h1M30.0 1.0h1");
  });

  it("draws nothing without readings, and a flat line for a constant", () => {
    expect(sparkPath([null, null], 40, 10)).toBe("");
    expect(sparkPath([5, 5], 40, 10)).toBe("M0.0 9.0L40.0 9.0");
  });
});

describe("Sparkline", () => {
  it("says what it shows", () => {
    render(<Sparkline values={[1, null, 2.5]} label="sensor-1" />);
    expect(screen.getByRole("img").getAttribute("aria-label")).toBe("sensor-1: 2 of 3 minutes, last 2.50");
  });
});
