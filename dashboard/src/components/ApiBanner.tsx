"use client";

import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { ApiError } from "@/api/client";

/** A banner while the API is unreachable: queries keep retrying, and the last data stays, marked stale.
 *  An HTTP error (the API answered) is not "unreachable"; a network error or a timeout is. */
export function ApiBanner() {
  const qc = useQueryClient();
  const [, tick] = useState(0);
  useEffect(() => qc.getQueryCache().subscribe(() => tick((n) => n + 1)), [qc]);
  const queries = qc.getQueryCache().getAll();
  const unreachable = queries.some((q) => {
    const reason = q.state.fetchFailureReason ?? q.state.error;
    return (q.state.fetchFailureCount > 0 || q.state.status === "error") && reason && !(reason instanceof ApiError);
  });
  if (!unreachable) return null;
  const last = Math.max(0, ...queries.map((q) => q.state.dataUpdatedAt));
  return (
    <div className="banner" role="alert" data-testid="api-banner">
      The API is unreachable; retrying.{" "}
      {last ? `Showing data from ${new Date(last).toLocaleTimeString()} (stale).` : "No data yet."}
    </div>
  );
}
