// tenantgate built-in dashboard: plain JS, no dependencies, no build step.
// Data comes from /dashboard/api/summary (all workers' metrics) and from the OpenAI-shaped usage and costs API.
// Every value is written with textContent: nothing from the server is ever parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "tenantgate.dashboard.token";
  const POLL_MS = 5000;
  const USAGE_MS = 60000;
  const MAX_PAGES = 10;
  const $ = (id) => document.getElementById(id);

  let previous = null;
  let pollTimer = null;
  let usageTimer = null;

  const fmt = {
    int: (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US")),
    rate: (n) => (n == null ? "–" : n.toFixed(n < 10 ? 2 : 1)),
    secs: (s) => {
      if (s == null) return "–";
      if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
      return s.toFixed(2) + " s";
    },
    pct: (x) => (x == null ? "–" : (x * 100).toFixed(1) + " %"),
    money: (value, currency) => value.toFixed(4) + " " + (currency || "usd").toUpperCase(),
  };

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function api(path) {
    return fetch(path, {
      headers: { Authorization: "Bearer " + token() },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  }

  function setText(id, text) {
    const element = $(id);
    if (element) element.textContent = text;
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    setText("status", "signed out");
    setText("login-error", message || "");
    $("token").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
  }

  function stop() {
    clearInterval(pollTimer);
    clearInterval(usageTimer);
    pollTimer = usageTimer = null;
    previous = null;
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    showLogin(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    let response;
    try {
      response = await api("/dashboard/api/summary");
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The gateway could not be reached.");
      return;
    }
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("That token was not accepted.");
      return;
    }
    if (!response.ok) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The gateway answered HTTP " + response.status + ".");
      return;
    }
    $("token").value = "";
    start(await response.json());
  }

  function start(first) {
    showApp();
    render(first);
    pollTimer = setInterval(poll, POLL_MS);
    loadUsage();
    usageTimer = setInterval(loadUsage, USAGE_MS);
  }

  async function poll() {
    try {
      const response = await api("/dashboard/api/summary");
      if (response.status === 401 || response.status === 403) {
        signOut("The token is no longer accepted: sign in again.");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (error) {
      setText("status", "update failed: " + error.message);
    }
  }

  // Prometheus' histogram_quantile, on cumulative-or-delta bucket counts (last count is the +Inf bucket).
  function quantile(bounds, counts, q) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (total <= 0) return null;
    const rank = q * total;
    let cumulative = 0;
    for (let i = 0; i < counts.length; i++) {
      if (cumulative + counts[i] >= rank && counts[i] > 0) {
        if (i >= bounds.length) return bounds[bounds.length - 1];
        const lower = i ? bounds[i - 1] : 0;
        return lower + ((bounds[i] - lower) * (rank - cumulative)) / counts[i];
      }
      cumulative += counts[i];
    }
    return null;
  }

  function render(s) {
    setText("status", "live · updated " + new Date(s.generated_at * 1000).toLocaleTimeString());
    if (!s.metrics_enabled) {
      setText("card-rps", "metrics off");
      return;
    }
    const t = s.totals;
    setText("total-requests", fmt.int(t.requests));
    setText("total-errors", fmt.int(t.errors));
    setText("total-server-errors", fmt.int(t.server_errors));
    setText("total-rate-limited", fmt.int(t.rate_limited));
    setText("total-input-tokens", fmt.int(t.input_tokens));
    setText("total-output-tokens", fmt.int(t.output_tokens));
    setText("card-in-flight", fmt.int(t.in_flight));
    setText("card-workers", fmt.int(t.workers));
    setText("card-error-ratio", t.requests ? fmt.pct(t.errors / t.requests) : "–");

    let latency = s.latency_seconds;
    let windowLabel = "since start";
    if (previous && previous.totals) {
      const seconds = s.generated_at - previous.generated_at;
      if (seconds > 0) {
        setText("card-rps", fmt.rate(Math.max(0, t.requests - previous.totals.requests) / seconds));
        const tokens = t.input_tokens + t.output_tokens - previous.totals.input_tokens - previous.totals.output_tokens;
        setText("card-tps", fmt.rate(Math.max(0, tokens) / seconds));
        const delta = s.latency_buckets.counts.map((c, i) => c - (previous.latency_buckets.counts[i] || 0));
        if (delta.some((c) => c > 0)) {
          const bounds = s.latency_buckets.bounds;
          latency = { p50: quantile(bounds, delta, 0.5), p95: quantile(bounds, delta, 0.95), p99: quantile(bounds, delta, 0.99) };
          windowLabel = "last " + Math.round(seconds) + " s";
        }
      }
    } else {
      setText("card-rps", "…");
      setText("card-tps", "…");
    }
    setText("card-latency", [latency.p50, latency.p95, latency.p99].map(fmt.secs).join(" / "));
    setText("latency-window", windowLabel);
    setText("card-ttft", fmt.secs(s.ttft_seconds.p95));

    const deps = Object.entries(s.dependencies);
    setText("card-dependencies", deps.length ? deps.map(([name, up]) => name + (up ? " ✓" : " ✗")).join("  ") : "–");
    const hits = s.key_cache.hit || 0;
    const misses = s.key_cache.miss || 0;
    setText("card-key-cache", hits + misses ? fmt.pct(hits / (hits + misses)) : "–");

    const usageRow = (key) => (r) => [r[key], fmt.int(r.requests), fmt.int(r.errors), fmt.int(r.rate_limited),
      fmt.int(r.input_tokens), fmt.int(r.output_tokens), fmt.secs(r.p50_seconds), fmt.secs(r.p95_seconds)];
    fillTable("tenants", s.tenants.map(usageRow("tenant")));
    fillTable("models", s.models.map(usageRow("model")));
    fillTable("upstreams", s.upstreams.map((r) => [r.upstream, fmt.int(r.attempts), fmt.int(r.errors), fmt.int(r.retries)]));
    fillTable("routes", s.routes.map((r) => [r.method, r.route, r.status, fmt.int(r.requests), fmt.secs(r.p95_seconds)]));
    setText("updated", "Workers: " + s.workers.map((w) => "pid " + w.pid + " (" + fmt.int(w.requests) + " requests)").join(", "));
    previous = s;
  }

  function fillTable(id, rows) {
    const table = $(id);
    const body = table.tBodies[0];
    const width = table.tHead.rows[0].cells.length;
    if (!rows.length) {
      const cell = document.createElement("td");
      cell.colSpan = width;
      cell.className = "muted";
      cell.textContent = "no data yet";
      const tr = document.createElement("tr");
      tr.appendChild(cell);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(
      ...rows.map((cells) => {
        const tr = document.createElement("tr");
        for (const value of cells) {
          const td = document.createElement("td");
          td.textContent = value == null || value === "" ? "–" : String(value);
          tr.appendChild(td);
        }
        return tr;
      })
    );
  }

  function failure(response) {
    if (response.status === 404) return "The usage API is not available on this gateway.";
    if (response.status === 401 || response.status === 403) return "The usage API did not accept this token.";
    return "The usage API answered HTTP " + response.status + ".";
  }

  // Every bucket of every page (bounded), following OpenAI's page cursor.
  async function pages(path, params) {
    const buckets = [];
    let page = null;
    for (let i = 0; i < MAX_PAGES; i++) {
      const query = new URLSearchParams(params);
      if (page) query.set("page", page);
      const response = await api(path + "?" + query.toString());
      if (!response.ok) throw response;
      const body = await response.json();
      buckets.push(...(body.data || []));
      if (!body.has_more || !body.next_page) break;
      page = body.next_page;
    }
    return buckets;
  }

  async function loadUsage() {
    const now = Math.floor(Date.now() / 1000);
    await loadTable("usage", "/v1/organization/usage/completions", [
      ["start_time", now - 86400], ["bucket_width", "1h"], ["limit", "24"],
      ["group_by[]", "project_id"], ["group_by[]", "model"],
    ], (buckets) => {
      const rows = new Map();
      for (const bucket of buckets) {
        for (const r of bucket.results || []) {
          const key = (r.project_id || "all") + "\u0000" + (r.model || "all");
          const row = rows.get(key) || { tenant: r.project_id || "all", model: r.model || "all", requests: 0, input: 0, cached: 0, output: 0 };
          row.requests += r.num_model_requests || 0;
          row.input += r.input_tokens || 0;
          row.cached += r.input_cached_tokens || 0;
          row.output += r.output_tokens || 0;
          rows.set(key, row);
        }
      }
      return [...rows.values()].sort((a, b) => b.requests - a.requests)
        .map((r) => [r.tenant, r.model, fmt.int(r.requests), fmt.int(r.input), fmt.int(r.cached), fmt.int(r.output)]);
    });
    await loadTable("costs", "/v1/organization/costs", [
      ["start_time", now - 7 * 86400], ["bucket_width", "1d"], ["limit", "7"], ["group_by[]", "project_id"],
    ], (buckets) => {
      const totals = new Map();
      let currency = "usd";
      for (const bucket of buckets) {
        for (const r of bucket.results || []) {
          const amount = r.amount || {};
          currency = amount.currency || currency;
          const key = r.project_id || "all";
          totals.set(key, (totals.get(key) || 0) + (Number(amount.value) || 0));
        }
      }
      return [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([tenant, value]) => [tenant, fmt.money(value, currency)]);
    });
  }

  async function loadTable(id, path, params, toRows) {
    try {
      const rows = toRows(await pages(path, params));
      fillTable(id, rows);
      setText(id + "-status", "");
    } catch (error) {
      fillTable(id, []);
      setText(id + "-status", error instanceof Response ? failure(error) : "The usage API could not be reached.");
    }
  }

  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut(""));

  if (token()) {
    api("/dashboard/api/summary")
      .then(async (response) => {
        if (response.ok) start(await response.json());
        else signOut(response.status === 401 ? "Sign in again." : "The gateway answered HTTP " + response.status + ".");
      })
      .catch(() => showLogin("The gateway could not be reached."));
  } else {
    showLogin("");
  }
})();
