import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

export function useSummary(sensors: string[] = [], start?: string, end?: string) {
  return useQuery({
    queryKey: queryKeys.summary({ sensors, start, end }),
    queryFn: async () =>
      unwrap(await api.GET("/api/summary", { params: { query: { sensor_id: sensors.length ? sensors : undefined, start, end } } })),
    refetchInterval: 2000,
  });
}
