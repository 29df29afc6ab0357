import { describe, expect, it } from "vitest";
import { autoBucket } from "./bucket";

describe("autoBucket", () => {
  it("picks the smallest bucket that keeps a chart under 300 points", () => {
    expect(autoBucket(300)).toBe("1s");
    expect(autoBucket(3600)).toBe("30s");
    expect(autoBucket(86400)).toBe("5m");
    expect(autoBucket(7 * 86400)).toBe("1h");
    expect(autoBucket(10 * 365 * 86400)).toBe("1d");
  });
});
