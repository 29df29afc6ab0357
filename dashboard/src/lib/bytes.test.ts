import { describe, expect, it } from "vitest";
import { bytes, share } from "./bytes";

describe("bytes", () => {
  it("uses the largest binary unit that fits", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(3 * 2 ** 30)).toBe("3.0 GiB");
    expect(bytes(null)).toBe("–");
  });
  it("caps a share at 100 and has none without a budget", () => {
    expect(share(50, 200)).toBe(25);
    expect(share(300, 200)).toBe(100);
    expect(share(10, 0)).toBe(0);
  });
});
