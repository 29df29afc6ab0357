import openapi from "@/api/openapi.json";
import type { PipelineConfig } from "@/api/client";

/** The configuration's limits, read from the API's own OpenAPI schema (not restated here). */
interface FieldSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  anyOf?: FieldSchema[];
  description?: string;
  title?: string;
}
const props = (openapi as unknown as { components: { schemas: { PipelineConfig: { properties: Record<string, FieldSchema> } } } })
  .components.schemas.PipelineConfig.properties;

export type ConfigField = keyof PipelineConfig;
export const CONFIG_FIELDS = Object.keys(props) as ConfigField[];

export function fieldSchema(name: ConfigField): FieldSchema {
  const s = props[name] ?? {};
  return s.anyOf?.find((x) => x.type !== "null") ?? s;
}

export function fieldLabel(name: ConfigField): string {
  return props[name]?.description ?? name;
}

export function nullable(name: ConfigField): boolean {
  return Boolean(props[name]?.anyOf?.some((x) => x.type === "null"));
}

/** Client-side checks: a number, an integer where required, within [minimum, maximum]. */
export function validateConfig(values: Record<string, string>): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const name of CONFIG_FIELDS) {
    const raw = (values[name] ?? "").trim();
    if (raw === "") {
      if (!nullable(name)) errors[name] = "required";
      continue;
    }
    const s = fieldSchema(name);
    const n = Number(raw);
    if (!Number.isFinite(n)) {
      errors[name] = "must be a number";
    } else if (s.type === "integer" && !Number.isInteger(n)) {
      errors[name] = "must be a whole number";
    } else if (s.minimum !== undefined && n < s.minimum) {
      errors[name] = `must be at least ${s.minimum}`;
    } else if (s.maximum !== undefined && n > s.maximum) {
      errors[name] = `must be at most ${s.maximum}`;
    }
  }
  return errors;
}

export function toConfig(values: Record<string, string>): PipelineConfig {
  const out: Record<string, number | null> = {};
  for (const name of CONFIG_FIELDS) {
    const raw = (values[name] ?? "").trim();
    out[name] = raw === "" ? null : Number(raw);
  }
  return out as unknown as PipelineConfig;
}

/** FastAPI 422 bodies name the field in `loc`; map them beside the fields. */
export function apiFieldErrors(body: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const detail = (body as { detail?: unknown })?.detail;
  if (Array.isArray(detail)) {
    for (const d of detail as Array<{ loc?: unknown[]; msg?: string }>) {
      const last = d.loc?.[d.loc.length - 1];
      const field = typeof last === "string" || typeof last === "number" ? String(last) : "form";
      out[field] = d.msg ?? "invalid";
    }
  } else if (typeof detail === "string") {
    out.form = detail;
  }
  return out;
}
