import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

/** One sensor's record over a range (at most a day): seq gaps, order violations, conflicts, newest events. */
export function useSensorReport(sensorId: string, start: string, end: string) {
  return useQuery({
    queryKey: queryKeys.sensorReport(sensorId, start, end),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/sensors/{sensor_id}/report", {
          params: { path: { sensor_id: sensorId }, query: { start, end, limit: 50 } },
        }),
      ),
    enabled: sensorId !== "",
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });
}

/** The last hour of each sensor, a mean per minute; every 30 s. */
export function useSparklines(ids: string[]) {
  return useQuery({
    queryKey: queryKeys.sparklines(ids),
    queryFn: async () => unwrap(await api.GET("/api/sparklines", { params: { query: { sensor_id: ids, minutes: 60 } } })),
    enabled: ids.length > 0,
    placeholderData: keepPreviousData,
    refetchInterval: 30_000,
  });
}
