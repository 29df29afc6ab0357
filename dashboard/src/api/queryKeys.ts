/** Every query key comes from here, so invalidation is never a guess. */
export const queryKeys = {
  pipeline: () => ["pipeline"] as const,
  pipelineHistory: (seconds: number) => ["pipeline", "history", seconds] as const,
  alarms: () => ["alarms"] as const,
  summary: (f: { sensors: string[]; start?: string; end?: string }) => ["summary", f] as const,
  readings: (f: { sensors: string[]; start: string; end: string; cursor?: string | null; limit: number }) =>
    ["readings", f] as const,
  aggregate: (f: { sensors: string[]; start: string; end: string; bucket: string }) => ["aggregate", f] as const,
  sensors: (f: { q: string; sort: string; order: string; cursor?: string | null }) => ["sensors", f] as const,
  sensorReport: (id: string, start: string, end: string) => ["sensors", "report", id, start, end] as const,
  sparklines: (ids: string[]) => ["sensors", "sparklines", ids] as const,
  deadLetters: (f: { reason: string }) => ["dead-letters", f] as const,
  deadLetterTimeline: (hours: number) => ["dead-letters", "timeline", hours] as const,
  deadLetter: (partition: number, offset: number) => ["dead-letters", "one", partition, offset] as const,
  event: (id: string) => ["event", id] as const,
  config: () => ["producer-config"] as const,
  configHistory: () => ["producer-config", "history"] as const,
};
