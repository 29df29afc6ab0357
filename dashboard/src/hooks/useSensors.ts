import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

type Sort = "quiet" | "sensor_id" | "events" | "last_seen" | "last_value" | "seq_gaps" | "order_violations";

export function useSensors(q: string, sort: Sort, order: "asc" | "desc", cursor: string | null, limit = 50) {
  return useQuery({
    queryKey: queryKeys.sensors({ q, sort, order, cursor }),
    queryFn: async () =>
      unwrap(await api.GET("/api/sensors", { params: { query: { q: q || undefined, sort, order, limit, cursor: cursor ?? undefined } } })),
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });
}
export type { Sort };
