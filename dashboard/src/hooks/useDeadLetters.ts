import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, ApiError, unwrap } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";
import type { paths } from "@/api/schema";

type Reason = NonNullable<NonNullable<paths["/api/dead-letters"]["get"]["parameters"]["query"]>["reason"]>;

/** The newest dead letters (of one reason, if given) and the count of every reason. */
export function useDeadLetters(reason: string) {
  return useQuery({
    queryKey: queryKeys.deadLetters({ reason }),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/dead-letters", {
          params: { query: { reason: (reason || undefined) as Reason, limit: 100 } },
        }),
      ),
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });
}

/** Dead letters by reason over the last `hours`, every bucket of the range; every 30 s. */
export function useDeadLetterTimeline(hours: number) {
  return useQuery({
    queryKey: queryKeys.deadLetterTimeline(hours),
    queryFn: async () => unwrap(await api.GET("/api/dead-letters/timeline", { params: { query: { hours } } })),
    placeholderData: keepPreviousData,
    refetchInterval: 30_000,
  });
}

/** One dead letter with its original message; read once (the original does not change). */
export function useDeadLetter(at: { partition: number; offset: number } | null) {
  return useQuery({
    queryKey: queryKeys.deadLetter(at?.partition ?? -1, at?.offset ?? -1),
    queryFn: async () =>
      unwrap(
        await api.GET("/api/dead-letters/{partition}/{offset}", {
          params: { path: { partition: at!.partition, offset: at!.offset } },
        }),
      ),
    enabled: at !== null,
    staleTime: Infinity,
  });
}

/** A processed event by id; null when it was not processed (404). */
export function useEvent(id: string) {
  return useQuery({
    queryKey: queryKeys.event(id),
    queryFn: async () => {
      const r = await api.GET("/api/events/{event_id}", { params: { path: { event_id: id } } });
      if (r.response.status === 404) return null;
      return unwrap(r);
    },
    enabled: id !== "",
    retry: (n, err) => !(err instanceof ApiError) && n < 1,
  });
}
