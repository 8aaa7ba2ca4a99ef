// Time-series charts drawn by uPlot (bundled, never fetched). Each chart is a figure with a heading and a text
// summary of its latest values, so the numbers are there for people who do not see the plot.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";

export interface Line {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: boolean;
}

// Colours distinguishable for the common colour-vision deficiencies (Okabe-Ito), dark enough on white.
export const COLORS = {
  ok: "#0072b2",
  client: "#8a6d00",
  limited: "#cc79a7",
  error: "#d55e00",
  p50: "#009e73",
  p95: "#0072b2",
  p99: "#d55e00",
  other: "#555555",
};

const live: uPlot[] = [];

export function disposeCharts(): void {
  while (live.length) live.pop()?.destroy();
}

function latest(values: (number | null)[]): number | null {
  for (let index = values.length - 1; index >= 0; index -= 1) if (values[index] !== null) return values[index];
  return null;
}

export function chart(
  id: string,
  title: string,
  t: number[],
  lines: Line[],
  format: (value: number | null) => string,
  note?: string,
): HTMLElement {
  const plot = h("div", { class: "plot", "aria-hidden": "true" });
  const summary = h(
    "p",
    { class: "chart-summary" },
    lines.map((line) => `${line.label}: ${format(latest(line.values))}`).join(" · "),
  );
  const figure = h("figure", { class: "chart", id, role: "group", "aria-label": title }, h("figcaption", {}, title), summary,
    note ? h("p", { class: "muted chart-note" }, note) : null, plot);
  const hasData = lines.some((line) => line.values.some((value) => value !== null));
  if (!hasData) {
    plot.appendChild(h("p", { class: "muted empty" }, "no data in this window"));
    return figure;
  }
  requestAnimationFrame(() => {
    const width = Math.max(280, plot.clientWidth || 420);
    const options: uPlot.Options = {
      width,
      height: 170,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: (_, ticks) => ticks.map((tick) => format(tick)), size: 92 }],
      series: [
        {},
        ...lines.map((line) => ({
          label: line.label,
          stroke: line.color,
          width: 1.5,
          dash: line.dash ? [4, 3] : undefined,
          spanGaps: false,
          points: { show: true, size: 4 },
          value: (_: uPlot, value: number | null) => format(value),
        })),
      ],
    };
    live.push(new uPlot(options, [t, ...lines.map((line) => line.values)] as uPlot.AlignedData, plot));
  });
  return figure;
}
