"use client";

import { useState } from "react";
import { ApiError } from "@/api/client";
import { TOKEN_KEY, useConfig, useConfigHistory, useSaveConfig } from "@/hooks/useConfig";
import { time } from "@/lib/format";
import { apiFieldErrors, CONFIG_FIELDS, fieldLabel, fieldSchema, toConfig, validateConfig } from "@/lib/validate";

/** The seed's three demo scenarios, as changes to the stored configuration (`sensorpipe demo`
uses the same knobs: 10% duplicates; a consumer slowed by 2 s per batch of at most 500). */
export const SCENARIOS: { name: string; label: string; values: Record<string, string> }[] = [
  { name: "normal", label: "Normal", values: { duplicate_ratio: "0", consumer_slowdown_ms: "0", consumer_batch_max: "" } },
  { name: "duplicates", label: "Duplicate delivery", values: { duplicate_ratio: "0.1", consumer_slowdown_ms: "0", consumer_batch_max: "" } },
  { name: "slowdown", label: "Consumer slowdown", values: { duplicate_ratio: "0", consumer_slowdown_ms: "2000", consumer_batch_max: "500" } },
];

export function ConfigForm() {
  const current = useConfig();
  const history = useConfigHistory();
  const save = useSaveConfig();
  // The form shows the stored configuration until the user edits it; from the first edit on it
  // shows the edits (null: not edited), derived during render rather than copied by an effect.
  const [edits, setEdits] = useState<Record<string, string> | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [needToken, setNeedToken] = useState(false);
  const [token, setToken] = useState("");
  const [saved, setSaved] = useState<number | null>(null);
  const values = edits ?? storedValues(current.data?.config);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    await store(values);
  };

  const store = async (values: Record<string, string>) => {
    const local = validateConfig(values);
    setErrors(local);
    if (Object.keys(local).length) return;
    if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
    try {
      const out = await save.mutateAsync(toConfig(values));
      setErrors({});
      setEdits(null);
      setNeedToken(false);
      setSaved(out?.version ?? null);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        setNeedToken(true);
        setErrors({ form: "The API requires the admin token for changes." });
      } else if (err instanceof ApiError) {
        setErrors(apiFieldErrors(err.body));
      } else {
        setErrors({ form: "The API is unreachable; nothing was saved." });
      }
    }
  };

  return (
    <section aria-labelledby="config-title">
      <h2 id="config-title">Producer configuration</h2>
      <p data-testid="config-version">
        {current.data ? `Version ${current.data.version}, stored ${time(current.data.updated_at)} by ${current.data.updated_by}` : "No configuration stored yet: the producer runs on its flags."}
      </p>
      <div className="row" role="group" aria-label="Scenarios">
        {SCENARIOS.map((sc) => (
          <button key={sc.name} type="button" data-testid={`scenario-${sc.name}`} disabled={save.isPending}
            onClick={() => { const next = { ...values, ...sc.values }; setEdits(next); void store(next); }}>
            {sc.label}
          </button>
        ))}
      </div>
      <form onSubmit={(e) => void submit(e)} noValidate className="config-form">
        {CONFIG_FIELDS.map((f) => {
          const s = fieldSchema(f);
          return (
            <div key={f} className="field">
              <label htmlFor={`cfg-${f}`}>{f}</label>
              <input id={`cfg-${f}`} name={f} inputMode="decimal" value={values[f] ?? ""} aria-describedby={`cfg-${f}-help cfg-${f}-err`}
                aria-invalid={Boolean(errors[f])}
                onChange={(e) => { setSaved(null); setEdits({ ...values, [f]: e.target.value }); }} />
              <small id={`cfg-${f}-help`}>{fieldLabel(f)} ({s.minimum ?? "–"} to {s.maximum ?? "–"})</small>
              <small id={`cfg-${f}-err`} className="error" data-testid={`error-${f}`}>{errors[f] ?? ""}</small>
            </div>
          );
        })}
        {needToken ? (
          <div className="field">
            <label htmlFor="cfg-token">Admin token</label>
            <input id="cfg-token" type="password" value={token} onChange={(e) => setToken(e.target.value)} autoComplete="off" />
            <small>Kept in this browser session only.</small>
          </div>
        ) : null}
        {errors.form ? <p className="error" role="alert" data-testid="form-error">{errors.form}</p> : null}
        <button type="submit" disabled={save.isPending}>Save</button>
        {saved !== null ? <span role="status" data-testid="saved"> Saved as version {saved}.</span> : null}
      </form>
      <h3>History</h3>
      <ol className="history" data-testid="history">
        {(history.data?.data ?? []).map((h) => (
          <li key={h.version}>
            v{h.version} · {time(h.updated_at)} · {h.updated_by} · rate {h.config.rate}, sensors {h.config.sensors},
            duplicates {h.config.duplicate_ratio}, poison {h.config.poison_ratio}, slowdown {h.config.consumer_slowdown_ms} ms
          </li>
        ))}
      </ol>
    </section>
  );
}

/** The stored configuration as the form's text values ("" for a field not set). */
function storedValues(cfg: Record<string, number | null> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of CONFIG_FIELDS) {
    const v = cfg?.[f];
    out[f] = v === null || v === undefined ? "" : String(v);
  }
  return out;
}
