"use client";

import { useEffect, useRef } from "react";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: number[];
  fill?: string;
}

interface Props {
  /** Epoch seconds. */
  x: number[];
  series: Series[];
  height?: number;
  /** Text alternative: the chart's numbers, read by screen readers and shown on request. */
  label: string;
  summary: string;
}

/** A uPlot chart (canvas, smooth with tens of thousands of points; drag to zoom, double-click to reset). */
export function Chart({ x, series, height = 240, label, summary }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // The newest data, for a plot made after it arrived: uPlot's code is loaded on demand, so
  // the data may come first, and the plot must not be made with the data of an older render.
  const data = useRef<uPlot.AlignedData>([[]]);
  const shape = series.map((s) => s.label).join("|");

  useEffect(() => {
    let disposed = false;
    const el = box.current;
    if (!el) return;
    void import("uplot").then(({ default: UPlot }) => {
      if (disposed) return;
      // the theme's colours (light or dark), as the stylesheet sets them
      const css = getComputedStyle(document.documentElement);
      const ink = css.getPropertyValue("--muted").trim() || "#5b6475";
      const line = css.getPropertyValue("--line").trim() || "#d9dee7";
      plot.current?.destroy();
      plot.current = new UPlot(
        {
          width: el.clientWidth || 600,
          height,
          scales: { x: { time: true } },
          cursor: { drag: { x: true, y: false } },
          series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, dash: s.dash, fill: s.fill, width: 1.5 }))],
          axes: [{ stroke: ink, grid: { stroke: line } }, { size: 60, stroke: ink, grid: { stroke: line } }],
        },
        data.current,
        el,
      );
    });
    const onResize = () => plot.current?.setSize({ width: el.clientWidth || 600, height });
    window.addEventListener("resize", onResize);
    return () => {
      disposed = true;
      window.removeEventListener("resize", onResize);
      plot.current?.destroy();
      plot.current = null;
    };
    // the plot is rebuilt only when its series change; data updates go through setData below
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height]);

  useEffect(() => {
    data.current = [x, ...series.map((s) => s.values)] as uPlot.AlignedData;
    plot.current?.setData(data.current, true);
  }, [x, series]);

  return (
    <figure className="chart" aria-label={label}>
      <div ref={box} role="img" aria-label={`${label}: ${summary}`} />
      <figcaption className="sr-only">{summary}</figcaption>
    </figure>
  );
}
