"use client";

import { useEffect, useMemo, useRef, useState } from "react";
import { heatScale, worstLast } from "@/lib/heat";
import { num, seconds } from "@/lib/format";

const ROW = 14; // px per partition

interface Props {
  /** Epoch seconds of each column. */
  at: number[];
  partitions: number[];
  lag: (number | null)[][];
  lagSeconds: (number | null)[][];
  drainSeconds: number | null | undefined;
}

/** Per-partition lag over time: one row per partition, one column per point, darker is more
 *  (log scale); in messages or in seconds (the age of the oldest unconsumed message). */
export function LagHeatmap({ at, partitions, lag, lagSeconds, drainSeconds }: Props) {
  const [unit, setUnit] = useState<"messages" | "seconds">("messages");
  const canvas = useRef<HTMLCanvasElement>(null);
  const rows = unit === "messages" ? lag : lagSeconds;
  const { max, cells } = useMemo(() => heatScale(rows), [rows]);
  const worst = useMemo(() => worstLast(partitions, rows), [partitions, rows]);

  useEffect(() => {
    const el = canvas.current;
    const ctx = el?.getContext("2d");
    if (!el || !ctx) return;
    const width = el.clientWidth || 600;
    el.width = width;
    el.height = partitions.length * ROW;
    const css = getComputedStyle(document.documentElement);
    const hot = css.getPropertyValue("--alarm").trim() || "#b42318";
    const none = css.getPropertyValue("--line").trim() || "#d9dee7";
    ctx.clearRect(0, 0, el.width, el.height);
    const n = Math.max(1, at.length);
    const w = width / n;
    cells.forEach((row, r) =>
      row.forEach((t, c) => {
        ctx.globalAlpha = t === null ? 0.35 : t;
        ctx.fillStyle = t === null ? none : hot;
        ctx.fillRect(Math.floor(c * w), r * ROW, Math.ceil(w), ROW - 1);
      }),
    );
    ctx.globalAlpha = 1;
  }, [at, partitions, cells]);

  const fmt = (v: number) => (unit === "messages" ? num(v) : seconds(v));
  const summary = worst
    ? `worst now: partition ${worst.partition} at ${fmt(worst.value)}; largest in the window ${fmt(max)}`
    : "no samples yet";
  return (
    <figure className="heatmap" aria-label="Lag per partition over time" data-testid="lag-heatmap">
      <div className="heatmap-head">
        <div role="group" aria-label="Lag unit">
          <button type="button" aria-pressed={unit === "messages"} onClick={() => setUnit("messages")}>messages</button>{" "}
          <button type="button" aria-pressed={unit === "seconds"} onClick={() => setUnit("seconds")}>seconds</button>
        </div>
        <span className="muted" data-testid="drain-estimate">
          {drainSeconds === null || drainSeconds === undefined
            ? "drain: not falling"
            : drainSeconds === 0 ? "caught up" : `drains in ${seconds(drainSeconds)}`}
        </span>
      </div>
      <div className="heatmap-body">
        <ol className="heatmap-rows" aria-hidden="true">
          {partitions.map((p) => <li key={p}>{p}</li>)}
        </ol>
        <canvas ref={canvas} role="img" aria-label={`Lag per partition in ${unit}: ${summary}`} data-max={max} />
      </div>
      <figcaption className="muted">
        Partitions 0 to {Math.max(0, partitions.length - 1)} by time, last {seconds(span(at))};
        darker is more, up to {fmt(max)} (log scale). {summary}.
      </figcaption>
    </figure>
  );
}

function span(at: number[]): number | null {
  const first = at[0];
  const last = at[at.length - 1];
  return first === undefined || last === undefined ? null : last - first;
}
