import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ApiError } from "@/api/client";
import { ApiBanner } from "./ApiBanner";

function Probe({ fail }: { fail: () => never }) {
  useQuery({ queryKey: ["probe"], queryFn: fail, retry: false });
  return null;
}

function setup(fail: () => never) {
  const qc = new QueryClient();
  render(
    <QueryClientProvider client={qc}>
      <ApiBanner />
      <Probe fail={fail} />
    </QueryClientProvider>,
  );
}

afterEach(cleanup);

describe("ApiBanner", () => {
  it("appears when the API cannot be reached", async () => {
    setup(() => {
      throw new TypeError("Failed to fetch");
    });
    await waitFor(() => expect(screen.getByTestId("api-banner").textContent).toMatch(/unreachable/));
  });

  it("stays away when the API answered with an error", async () => {
    setup(() => {
      throw new ApiError(404, { detail: "nope" });
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(screen.queryByTestId("api-banner")).toBeNull();
  });
});
