import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

export function useReadings(sensors: string[], start: string, end: string, cursor: string | null, limit = 50) {
  return useQuery({
    queryKey: queryKeys.readings({ sensors, start, end, cursor, limit }),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/readings", {
          params: { query: { sensor_id: sensors.length ? sensors : undefined, start, end, limit, cursor: cursor ?? undefined } },
        }),
      ),
    placeholderData: keepPreviousData,
  });
}

export function useAggregate(sensors: string[], start: string, end: string, bucket: string) {
  return useQuery({
    queryKey: queryKeys.aggregate({ sensors, start, end, bucket }),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/readings/aggregate", {
          params: { query: { sensor_id: sensors.length ? sensors : undefined, start, end, bucket } },
        }),
      ),
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });
}
