import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { StatTile } from "./StatTile";

describe("StatTile", () => {
  it("shows its label, value and hint", () => {
    render(<StatTile label="Produced / s" value="5,000" hint="target 5,000" testId="t" />);
    expect(screen.getByTestId("t").textContent).toContain("Produced / s");
    expect(screen.getByText("5,000")).toBeTruthy();
    expect(screen.getByText("target 5,000")).toBeTruthy();
  });
});
