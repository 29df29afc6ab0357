import { describe, expect, it } from "vitest";
import { withBreaks } from "./gaps";

describe("withBreaks", () => {
  it("adds a null one bucket after a point followed by a gap", () => {
    const out = withBreaks([0, 60, 120, 600, 660], [[1, 2, 3, 4, 5]], 60);
    expect(out.times).toEqual([0, 60, 120, 180, 600, 660]);
    expect(out.columns).toEqual([[1, 2, 3, null, 4, 5]]);
  });

  it("leaves a series without gaps as it is", () => {
    const out = withBreaks([0, 60, 120], [[1, 2, 3], [4, 5, 6]], 60);
    expect(out.times).toEqual([0, 60, 120]);
    expect(out.columns).toEqual([[1, 2, 3], [4, 5, 6]]);
  });
});
