import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

/** The last 15 minutes of the pipeline (the API keeps them), at most 180 points; every 5 s. */
export function usePipelineHistory(seconds = 900) {
  return useQuery({
    queryKey: queryKeys.pipelineHistory(seconds),
    queryFn: async () =>
      unwrap(await api.GET("/api/pipeline/history", { params: { query: { seconds, points: 180 } } })),
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });
}

/** What needs an operator now; every 2 s. */
export function useAlarms() {
  return useQuery({
    queryKey: queryKeys.alarms(),
    queryFn: async () => unwrap(await api.GET("/api/alarms")),
    refetchInterval: 2000,
  });
}
