import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { AlarmsPanel } from "./AlarmsPanel";

describe("AlarmsPanel", () => {
  it("lists each alarm with its title and detail, critical ones as alerts", () => {
    render(
      <AlarmsPanel
        loaded
        alarms={[
          { kind: "stalled_partitions", severity: "critical", detail: "partitions 3, 7: messages wait" },
          { kind: "silent_sensors", severity: "warning", detail: "2 sensor(s) silent, longest first: s-1, s-2" },
        ]}
      />,
    );
    expect(screen.getByTestId("alarm-stalled_partitions").textContent).toContain("Stalled partitions");
    expect(screen.getByTestId("alarm-stalled_partitions").textContent).toContain("partitions 3, 7");
    expect(screen.getAllByRole("alert")).toHaveLength(1);
    expect(screen.getByTestId("alarm-silent_sensors").textContent).toContain("s-1, s-2");
    expect(screen.queryByTestId("alarms-clear")).toBeNull();
  });

  it("says all is clear only once the API has answered", () => {
    const { rerender } = render(<AlarmsPanel loaded={false} alarms={undefined} />);
    expect(screen.queryByTestId("alarms-clear")).toBeNull();
    rerender(<AlarmsPanel loaded alarms={[]} />);
    expect(screen.getByTestId("alarms-clear")).toBeTruthy();
  });
});
