import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Pipeline = Schemas["PipelinePublic"];
export type PipelineHistory = Schemas["PipelineHistoryPublic"];
export type Alarm = Schemas["AlarmPublic"];
export type Summary = Schemas["SummaryPublic"];
export type Reading = Schemas["ReadingPublic"];
export type ReadingsPage = Schemas["ReadingsPage"];
export type AggregatePage = Schemas["AggregatePage"];
export type SensorsPage = Schemas["SensorsPage"];
export type Sensor = Schemas["SensorPublic"];
export type ConfigPublic = Schemas["ConfigPublic"];
export type DeadLettersPage = Schemas["DeadLettersPage"];
export type DeadLetter = Schemas["DeadLetterPublic"];
export type DeadLetterDetail = Schemas["DeadLetterDetail"];
export type BytesPublic = Schemas["BytesPublic"];
export type EventPublic = Schemas["EventPublic"];
export type PipelineConfig = Schemas["PipelineConfig"];
export type ConfigHistoryPage = Schemas["ConfigHistoryPage"];

/** An HTTP error from the API, with its JSON body (FastAPI's `detail`). */
export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly body: unknown,
  ) {
    super(`API answered ${status}`);
  }
}

const TIMEOUT_MS = 4000;

/** fetch with a deadline, so a hung API shows as an error (and the banner) instead of a spinner. */
const timedFetch: typeof fetch = (input, init) => {
  const signal = AbortSignal.timeout(TIMEOUT_MS);
  return fetch(input, { ...init, signal: init?.signal ?? signal });
};

export const api = createClient<paths>({ baseUrl: "", fetch: timedFetch });

/** Unwraps an openapi-fetch result: the data, or an ApiError thrown for TanStack Query. */
export function unwrap<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.data === undefined || !r.response.ok) throw new ApiError(r.response.status, r.error);
  return r.data;
}
