import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

/** Pipeline health, sampled by the API every second; polled every second. */
export function usePipeline() {
  return useQuery({
    queryKey: queryKeys.pipeline(),
    queryFn: async () => unwrap(await api.GET("/api/pipeline")),
    refetchInterval: 1000,
  });
}
