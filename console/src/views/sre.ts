// The SRE view: charts of the last 15 min to 7 days from the gateway's own history and usage ledger, drill-down
// by tenant, key, model and upstream, the state right now, and the shipped alerts' states.
import { get, query } from "../api";
import { chart, COLORS, disposeCharts } from "../charts";
import { clear, h, table } from "../dom";
import * as f from "../format";
import { errorText, section } from "../ui";

type Nullable = (number | null)[];
type Percentiles = Record<"p50" | "p95" | "p99", Nullable>;

interface Traffic {
  t: number[];
  step_seconds: number;
  // 429_limits (the gateway's own limits refused) and 429_upstream (an upstream's 429 passed on) split "429"
  // wherever the limiter's refusals can be narrowed alike: not when narrowed by model or upstream.
  requests_per_second: Record<"2xx" | "4xx" | "429" | "5xx", Nullable> & Partial<Record<"429_limits" | "429_upstream", Nullable>>;
  latency_seconds?: Percentiles;
  ttft_seconds?: Percentiles;
  tokens_per_second?: Record<"input" | "output", Nullable>;
  // Where a request's time went: the gateway's work, upstream attempts, and waiting by design (a work slot's queue,
  // pacing before a refusal, backoff between attempts: percentiles of the requests that waited).
  time_seconds?: Record<"gateway" | "upstream", Percentiles> & Partial<Record<"waiting", Percentiles>>;
  upstream?: { errors_per_second: Nullable; retries_per_second: Nullable };
  rejections_per_second?: Record<string, Nullable>;
  limiter?: { admissions_per_second: Record<string, Nullable>; dependency_up: Record<string, Nullable> };
  metering?: { write_lag_seconds: Nullable; spool_bytes: Nullable; buffered_events: Nullable };
  in_flight?: Nullable;
  totals: {
    requests: number;
    "2xx": number;
    "4xx": number;
    "429": number;
    "429_limits": number | null;
    "429_upstream": number | null;
    "5xx": number;
    upstream_errors: number;
    error_ratio: number | null;
    rate_limited_ratio: number | null;
    tenants: Row[];
    models: Row[];
    upstreams: Row[];
  };
}

interface Row {
  [name: string]: string | number | null | undefined;
}

interface LedgerRow {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cost_nano_usd: number;
  [name: string]: string | number | null;
}

interface Ledger {
  t: number[];
  requests: number[];
  input_tokens: number[];
  output_tokens: number[];
  cost_usd_per_hour: number[];
  total: LedgerRow;
  tenants: LedgerRow[];
  keys: LedgerRow[];
  models: LedgerRow[];
}

interface Series {
  metrics_enabled: boolean;
  traffic?: Traffic;
  ledger: Ledger;
}

interface Overview {
  metrics_enabled: boolean;
  in_flight?: number;
  worker_count?: number;
  dependencies?: Record<string, number>;
  key_cache?: Record<string, number>;
  limiter_admissions?: Record<string, number>;
  metering?: { buffered_events: number; spool_bytes: number; write_lag_seconds: number; rejected_events: number };
  routes?: { method: string; route: string; status: string; requests: number; p95_seconds: number | null }[];
  workers?: { pid: number; exited: boolean; snapshot_age_seconds: number }[];
  alerts: null | { error?: string; rules?: { name: string; state: string; severity: string; summary: string; active: number }[] };
  grafana: { title: string; url: string }[];
}

const WINDOWS = ["15m", "1h", "24h", "7d"] as const;
const state = { window: "1h" as string, tenant: "", model: "", upstream: "", key: "" };
let timer: number | undefined;

export function stopSre(): void {
  if (timer !== undefined) window.clearInterval(timer);
  timer = undefined;
}

/**
 * The window and drill-down live in the hash too (#/sre?window=24h&tenant=ten_…), so a view can be linked or
 * reloaded. A bare #/sre (the nav link) keeps what was chosen last and writes it back into the hash.
 */
function readHash(): void {
  const [, search = ""] = location.hash.split("?", 2);
  if (!search) return;
  const params = new URLSearchParams(search);
  const wanted = params.get("window") ?? "";
  state.window = (WINDOWS as readonly string[]).includes(wanted) ? wanted : "1h";
  for (const name of ["tenant", "model", "upstream", "key"] as const) state[name] = params.get(name) ?? "";
}

function writeHash(): void {
  const wanted = `#/sre${query({ ...state })}`;
  if (location.hash !== wanted) history.replaceState(null, "", wanted);
}

export async function sreView(main: HTMLElement): Promise<void> {
  stopSre();
  readHash();
  writeHash();
  const body = h("div", { id: "sre-body" });
  clear(main);
  main.append(h("h1", {}, "Traffic and health"), controls(() => void render(body)), body);
  await render(body);
  if (!body.isConnected) return; // another view was chosen while the first charts loaded: nothing to refresh
  timer = window.setInterval(() => void render(body), 10_000);
}

function controls(changed: () => void): HTMLElement {
  const group = h("div", { class: "windows", role: "group", "aria-label": "Time window" });
  for (const name of WINDOWS) {
    const button = h("button", { type: "button", "aria-pressed": String(state.window === name), "data-window": name }, name);
    button.addEventListener("click", () => {
      state.window = name;
      writeHash();
      group.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.window === name)));
      changed();
    });
    group.append(button);
  }
  return h("div", { class: "controls" }, group, h("div", { id: "drill", class: "drill" }));
}

function drillSelect(name: keyof typeof state, label: string, options: [string, string][], changed: () => void): HTMLElement {
  const select = h("select", { id: `drill-${name}`, name }, h("option", { value: "" }, `all ${label}s`));
  const known = new Set(options.map(([value]) => value));
  if (state[name] && !known.has(state[name])) options = [[state[name], state[name]], ...options];
  for (const [value, text] of options) select.append(h("option", { value, selected: state[name] === value }, text));
  select.addEventListener("change", () => {
    state[name] = select.value;
    writeHash();
    changed();
  });
  return h("div", { class: "field" }, h("label", { for: select.id }, label), select);
}

let renders = 0;

async function render(body: HTMLElement): Promise<void> {
  // Answers can arrive out of order (a selection changed while the last one loaded): only the newest is drawn.
  const mine = ++renders;
  let series: Series;
  let overview: Overview;
  try {
    [series, overview] = await Promise.all([
      get<Series>(`/console/api/series${query({ window: state.window, tenant: state.tenant, model: state.model, upstream: state.upstream, key: state.key })}`),
      get<Overview>("/console/api/overview"),
    ]);
  } catch (error) {
    if (mine !== renders) return;
    clear(body);
    body.append(h("p", { class: "error", role: "alert" }, errorText(error)));
    return;
  }
  if (mine !== renders) return;
  disposeCharts();
  clear(body);
  const rerender = () => void render(body);
  const drill = document.getElementById("drill");
  const traffic = series.traffic;
  const ledger = series.ledger;
  if (drill) {
    clear(drill);
    const tenants = new Map<string, string>();
    for (const row of [...(traffic?.totals.tenants ?? []), ...ledger.tenants]) {
      tenants.set(String(row.tenant), String(row.tenant_name ?? row.tenant));
    }
    drill.append(
      drillSelect("tenant", "tenant", [...tenants].sort((a, b) => a[1].localeCompare(b[1])), rerender),
      drillSelect("key", "key", ledger.keys.map((row) => [String(row.key), `${row.key_name ?? row.key}`]), rerender),
      drillSelect("model", "model", uniq([...(traffic?.totals.models ?? []).map((r) => String(r.model)), ...ledger.models.map((r) => String(r.model))]), rerender),
      drillSelect("upstream", "upstream", uniq((traffic?.totals.upstreams ?? []).map((r) => String(r.upstream))), rerender),
    );
  }
  body.append(cards(traffic, ledger, overview));
  if (!series.metrics_enabled) body.append(h("p", { class: "muted" }, "Metrics are disabled on this gateway: only the usage ledger is shown."));
  if (state.key) body.append(h("p", { class: "muted" }, "Per key, only the usage ledger answers: key ids are never metric labels."));
  body.append(h("div", { class: "charts" }, ...charts(traffic, ledger)));
  body.append(tables(traffic, ledger, overview));
}

function uniq(values: string[]): [string, string][] {
  return [...new Set(values.filter(Boolean))].sort().map((value) => [value, value]);
}

function card(id: string, title: string, value: string, note: string): HTMLElement {
  return h("div", { class: "card", id }, h("h3", {}, title), h("p", { class: "value" }, value), h("small", {}, note));
}

function cards(traffic: Traffic | undefined, ledger: Ledger, overview: Overview): HTMLElement {
  const totals = traffic?.totals;
  const seconds = traffic ? traffic.t.length * traffic.step_seconds : 0;
  const lastP95 = traffic?.latency_seconds ? last(traffic.latency_seconds.p95) : null;
  const up = overview.dependencies ?? {};
  return h(
    "div",
    { class: "cards" },
    requestsCard(totals, seconds, ledger),
    card("card-errors", "Errors (5xx)", totals ? f.percent(totals.error_ratio) : "–", totals ? `${f.count(totals["5xx"])} 5xx · ${f.count(totals.upstream_errors)} upstream failures` : state.key ? "not counted per key" : ""),
    limitedCard(totals),
    card("card-latency", "Latency p95", f.seconds(lastP95), "last interval, answered requests"),
    card("card-cost", "Cost", f.nanoUsd(ledger.total.cost_nano_usd), `${f.count(ledger.total.requests)} metered requests in ${state.window}`),
    card("card-inflight", "In flight", f.count(overview.in_flight), `${f.count(overview.worker_count)} worker(s)`),
    card("card-deps", "Dependencies", Object.keys(up).length ? Object.entries(up).map(([name, value]) => `${name} ${value ? "up" : "DOWN"}`).join(", ") : "–", "database, Redis"),
    card("card-metering", "Metering lag", f.seconds(overview.metering?.write_lag_seconds), `spool ${f.bytes(overview.metering?.spool_bytes)} · ${f.count(overview.metering?.buffered_events)} buffered`),
  );
}

function requestsCard(totals: Traffic["totals"] | undefined, seconds: number, ledger: Ledger): HTMLElement {
  if (totals) return card("card-requests", "Requests", f.count(totals.requests), `${f.rate(totals.requests / seconds)}/s over ${state.window}`);
  // Per key the series come from the usage ledger only (key ids are never metric labels): its metered requests.
  if (state.key) return card("card-requests", "Requests", f.count(ledger.total.requests), `metered requests of this key in ${state.window} (usage ledger)`);
  return card("card-requests", "Requests", "–", "metrics are disabled on this gateway");
}

function limitedCard(totals: Traffic["totals"] | undefined): HTMLElement {
  if (!totals) return card("card-limited", "Refused by limits (429)", "–", state.key ? "not counted per key" : "");
  if (totals["429_limits"] === null) {
    return card("card-limited", "429 answers", f.count(totals["429"]), "limits and upstreams together: not told apart per model or upstream");
  }
  return card("card-limited", "Refused by limits (429)", f.count(totals["429_limits"]),
    `${f.percent(totals.requests ? totals["429_limits"] / totals.requests : null)} of requests · ${f.count(totals["429_upstream"])} upstream 429s apart`);
}

function last(values: Nullable): number | null {
  for (let index = values.length - 1; index >= 0; index -= 1) if (values[index] !== null) return values[index];
  return null;
}

function charts(traffic: Traffic | undefined, ledger: Ledger): HTMLElement[] {
  const out: HTMLElement[] = [];
  if (traffic) {
    const t = traffic.t;
    const r = traffic.requests_per_second;
    out.push(
      chart("chart-requests", "Requests per second by status", t, [
        { label: "2xx", values: r["2xx"], color: COLORS.ok },
        { label: "4xx", values: r["4xx"], color: COLORS.client },
        ...(r["429_limits"] && r["429_upstream"]
          ? [{ label: "429 gateway limits", values: r["429_limits"], color: COLORS.limited, dash: true },
             { label: "429 from upstreams", values: r["429_upstream"], color: COLORS.other, dash: true }]
          : [{ label: "429 (limits and upstreams)", values: r["429"], color: COLORS.limited, dash: true }]),
        { label: "5xx", values: r["5xx"], color: COLORS.error },
      ], f.rate),
    );
    if (traffic.latency_seconds) out.push(percentiles("chart-latency", "Latency (answered requests)", t, traffic.latency_seconds));
    if (traffic.ttft_seconds) out.push(percentiles("chart-ttft", "Time to first token (streams)", t, traffic.ttft_seconds));
    if (traffic.time_seconds) {
      const parts = traffic.time_seconds;
      out.push(
        chart("chart-overhead", "Gateway overhead, upstream time and waiting (p50, p95)", t, [
          { label: "gateway p50", values: parts.gateway.p50, color: COLORS.p50 },
          { label: "gateway p95", values: parts.gateway.p95, color: COLORS.p95 },
          { label: "upstream p50", values: parts.upstream.p50, color: COLORS.other, dash: true },
          { label: "upstream p95", values: parts.upstream.p95, color: COLORS.error, dash: true },
          ...(parts.waiting ? [
            { label: "waiting p50", values: parts.waiting.p50, color: COLORS.client },
            { label: "waiting p95", values: parts.waiting.p95, color: COLORS.limited },
          ] : []),
        ], f.seconds, "Waiting: a work slot's queue, pacing before a refusal, backoff between retries; of the requests that waited."),
      );
    }
    if (traffic.tokens_per_second) {
      out.push(
        chart("chart-tokens", "Tokens per second", t, [
          { label: "input", values: traffic.tokens_per_second.input, color: COLORS.ok },
          { label: "output", values: traffic.tokens_per_second.output, color: COLORS.p50 },
        ], f.rate),
      );
    }
    if (traffic.upstream) {
      out.push(
        chart("chart-upstream", "Upstream errors and retries per second", t, [
          { label: "errors", values: traffic.upstream.errors_per_second, color: COLORS.error },
          { label: "retries", values: traffic.upstream.retries_per_second, color: COLORS.client, dash: true },
        ], f.rate),
      );
    }
    if (traffic.limiter) {
      const lines = Object.entries(traffic.limiter.admissions_per_second).map(([name, values], index) => ({
        label: `checks via ${name}`,
        values,
        color: [COLORS.ok, COLORS.p50, COLORS.client][index % 3],
      }));
      for (const [name, values] of Object.entries(traffic.limiter.dependency_up)) {
        lines.push({ label: `${name} up`, values, color: COLORS.error });
      }
      for (const [name, values] of Object.entries(traffic.rejections_per_second ?? {})) {
        lines.push({ label: `refused: ${name}`, values, color: COLORS.limited });
      }
      out.push(chart("chart-limiter", "Limiter and Redis", t, lines, f.rate));
    }
    if (traffic.metering) {
      out.push(
        chart("chart-metering", "Metering lag (s) and spool", t, [
          { label: "write lag", values: traffic.metering.write_lag_seconds, color: COLORS.error },
          { label: "spool KiB", values: traffic.metering.spool_bytes.map((v) => (v === null ? null : v / 1024)), color: COLORS.other, dash: true },
          { label: "buffered events", values: traffic.metering.buffered_events, color: COLORS.ok },
        ], f.rate),
      );
    }
  }
  out.push(
    chart("chart-cost", "Cost per hour (usage ledger)", ledger.t, [{ label: "USD/hour", values: ledger.cost_usd_per_hour, color: COLORS.error }], f.usd),
    chart("chart-ledger-tokens", "Metered tokens per bucket (usage ledger)", ledger.t, [
      { label: "input", values: ledger.input_tokens, color: COLORS.ok },
      { label: "output", values: ledger.output_tokens, color: COLORS.p50 },
    ], f.count),
  );
  return out;
}

function percentiles(id: string, title: string, t: number[], values: Percentiles): HTMLElement {
  return chart(id, title, t, [
    { label: "p50", values: values.p50, color: COLORS.p50 },
    { label: "p95", values: values.p95, color: COLORS.p95 },
    { label: "p99", values: values.p99, color: COLORS.p99, dash: true },
  ], f.seconds);
}

function tables(traffic: Traffic | undefined, ledger: Ledger, overview: Overview): HTMLElement {
  const wrap = h("div", { class: "tables" });
  const byTenant = new Map(ledger.tenants.map((row) => [String(row.tenant), row]));
  if (traffic) {
    wrap.append(
      section("Tenants", table("tenants", `Tenants, last ${state.window}`, ["tenant", "requests", "5xx", "429 limits", "429 upstream", "4xx", "p95", "cost"],
        traffic.totals.tenants.map((row) => [
          drillLink(String(row.tenant_name ?? row.tenant), "tenant", String(row.tenant)),
          f.count(Number(row.requests)), f.count(Number(row["5xx"])), f.count(row["429_limits"] as number | null), f.count(row["429_upstream"] as number | null),
          f.count(Number(row["4xx"])),
          f.seconds(row.p95_seconds as number | null), f.nanoUsd(byTenant.get(String(row.tenant))?.cost_nano_usd),
        ]))),
      section("Models", table("models", `Models, last ${state.window}`, ["model", "requests", "5xx", "429 (all)", "p95"],
        traffic.totals.models.map((row) => [drillLink(String(row.model), "model", String(row.model)), f.count(Number(row.requests)),
          f.count(Number(row["5xx"])), f.count(Number(row["429"])), f.seconds(row.p95_seconds as number | null)]))),
      section("Upstreams", table("upstreams", `Upstreams, last ${state.window}`, ["upstream", "requests", "5xx", "upstream failures"],
        traffic.totals.upstreams.map((row) => [drillLink(String(row.upstream), "upstream", String(row.upstream)), f.count(Number(row.requests)),
          f.count(Number(row["5xx"])), f.count(Number(row.upstream_errors ?? 0))]))),
    );
  }
  wrap.append(
    section("Keys (usage ledger)", table("keys", `Keys by cost, last ${state.window}`, ["key", "tenant", "requests", "input tokens", "output tokens", "cost"],
      ledger.keys.map((row) => [drillLink(String(row.key_name ?? row.key), "key", String(row.key)), String(row.tenant_name ?? row.tenant ?? ""), f.count(row.requests),
        f.count(row.input_tokens), f.count(row.output_tokens), f.nanoUsd(row.cost_nano_usd)]))),
  );
  if (overview.routes) {
    wrap.append(section("Routes since start", table("routes", "HTTP routes since the workers started (the console's own are left out)",
      ["method", "route", "status", "requests", "p95"],
      overview.routes.map((row) => [row.method, row.route, row.status, f.count(row.requests), f.seconds(row.p95_seconds)]))));
  }
  if (overview.alerts) {
    const alerts = overview.alerts;
    wrap.append(section("Alerts", alerts.error ? h("p", { class: "error" }, alerts.error) : table("alerts", "Shipped alert rules, as Prometheus evaluates them",
      ["alert", "state", "severity", "summary"],
      (alerts.rules ?? []).map((rule) => [rule.name, h("span", { class: `state ${rule.state}` }, rule.state), rule.severity, rule.summary]))));
  }
  if (overview.grafana.length) {
    wrap.append(section("Grafana", h("ul", {}, ...overview.grafana.map((link) => h("li", {}, h("a", { href: link.url, rel: "noreferrer", target: "_blank" }, link.title))))));
  }
  if (overview.workers) {
    wrap.append(section("Workers", table("workers", "Worker processes", ["pid", "state", "snapshot age"],
      overview.workers.map((w) => [String(w.pid), w.exited ? "exited" : "running", `${w.snapshot_age_seconds} s`]))));
  }
  return wrap;
}

function drillLink(label: string, name: "tenant" | "model" | "upstream" | "key", value: string): HTMLElement {
  const button = h("button", { type: "button", class: "link", title: `Show only ${name} ${value}` }, label);
  button.addEventListener("click", () => {
    state[name] = value;
    const select = document.getElementById(`drill-${name}`) as HTMLSelectElement | null;
    if (select) {
      if (![...select.options].some((option) => option.value === value)) select.append(h("option", { value }, label));
      select.value = value;
      select.dispatchEvent(new Event("change"));
    }
  });
  return button;
}
