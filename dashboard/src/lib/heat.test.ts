import { describe, expect, it } from "vitest";
import { heatScale, worstLast } from "./heat";

describe("heatScale", () => {
  it("scales against the largest value on a log scale and keeps missing samples missing", () => {
    const { max, cells } = heatScale([
      [0, 9, null],
      [999, 99, 0],
    ]);
    expect(max).toBe(999);
    expect(cells[1]?.[0]).toBe(1);
    expect(cells[0]?.[0]).toBe(0);
    expect(cells[0]?.[2]).toBeNull();
    // log scale: 9 is a third of the way to 999 (log 10 / log 1000), not 1%
    expect(cells[0]?.[1]).toBeCloseTo(1 / 3, 5);
    expect(cells[1]?.[1]).toBeCloseTo(2 / 3, 5);
  });

  it("draws an all-zero map as empty rather than dividing by zero", () => {
    expect(heatScale([[0, 0], [null, 0]]).cells).toEqual([[0, 0], [null, 0]]);
  });
});

describe("worstLast", () => {
  it("names the partition with the largest current value", () => {
    expect(worstLast([0, 1, 2], [[5, 1], [0, 7], [9, null]])).toEqual({ partition: 1, value: 7 });
    expect(worstLast([0], [[]])).toBeNull();
  });
});
