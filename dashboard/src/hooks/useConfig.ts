import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, unwrap, type PipelineConfig } from "@/api/client";
import { queryKeys } from "@/api/queryKeys";

export const TOKEN_KEY = "sensorpipe.adminToken"; // sessionStorage: gone when the browser session ends

export function useConfig() {
  return useQuery({
    queryKey: queryKeys.config(),
    queryFn: async () => {
      const r = await api.GET("/api/producer-config");
      if (r.response.status === 404) return null; // nothing stored yet
      return unwrap(r);
    },
    refetchInterval: 5000,
  });
}

export function useConfigHistory() {
  return useQuery({
    queryKey: queryKeys.configHistory(),
    queryFn: async () => unwrap(await api.GET("/api/producer-config/history", { params: { query: { limit: 20 } } })),
    refetchInterval: 5000,
  });
}

export function useSaveConfig() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async (body: PipelineConfig) => {
      const token = typeof window === "undefined" ? null : window.sessionStorage.getItem(TOKEN_KEY);
      const r = await api.PUT("/api/producer-config", {
        body,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
      if (!r.response.ok) throw new ApiError(r.response.status, r.error);
      return r.data;
    },
    onSuccess: () => qc.invalidateQueries({ queryKey: queryKeys.config() }),
  });
}
