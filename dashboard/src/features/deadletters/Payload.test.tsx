import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { hexRows, Payload } from "./Payload";

describe("hexRows", () => {
  it("gives offset, hex and printable ASCII, 16 bytes a row", () => {
    const bytes = "fffe7b6e6f74206a736f6e".padEnd(40, "41"); // 20 bytes
    const rows = hexRows(bytes);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toEqual({
      offset: "00000000",
      hex: "ff fe 7b 6e 6f 74 20 6a 73 6f 6e 41 41 41 41 41",
      ascii: "..{not jsonAAAAA",
    });
    expect(rows[1]?.offset).toBe("00000010");
  });
});

describe("Payload", () => {
  it("shows text for UTF-8 and always a hex view", () => {
    render(<Payload label="value" bytes={{ text: '{"a":1}', hex: "7b2261223a317d", size: 7 }} />);
    expect(screen.getByTestId("text-value").textContent).toBe('{"a":1}');
    expect(screen.getByTestId("hex-value").textContent).toContain("7b 22 61 22 3a 31 7d");
  });

  it("says when the bytes are not UTF-8 and shows only hex", () => {
    render(<Payload label="key" bytes={{ text: null, hex: "ff00", size: 2 }} />);
    expect(screen.queryByTestId("text-key")).toBeNull();
    expect(screen.getByText(/not UTF-8/)).toBeTruthy();
  });

  it("says when there are no bytes", () => {
    render(<Payload label="key" bytes={null} />);
    expect(screen.getByText("none")).toBeTruthy();
  });
});
