// Numbers as people read them. Money keeps its significant digits: a cent fraction is not "0.0000".

const integer = new Intl.NumberFormat("en-US");

export function count(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : integer.format(Math.round(value));
}

export function usd(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "$0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1) return `$${value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  // Two significant digits below a dollar, however small: $0.000012, $0.0042, $0.31.
  const digits = Math.min(9, Math.max(2, 1 - Math.floor(Math.log10(magnitude))));
  return `$${value.toFixed(digits).replace(/(\.\d*?[1-9])0+$/, "$1")}`;
}

/** Exact nano-USD (the ledger's unit) as dollars. */
export function nanoUsd(nanos: number | null | undefined): string {
  return nanos === null || nanos === undefined ? "–" : usd(nanos / 1e9);
}

export function seconds(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "0 s";
  if (value < 0.001) return `${(value * 1e6).toFixed(0)} µs`;
  if (value < 1) return `${(value * 1000).toFixed(value < 0.01 ? 2 : 0)} ms`;
  return `${value.toFixed(2)} s`;
}

export function rate(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  return value >= 10 ? value.toFixed(0) : value.toFixed(2);
}

export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(value < 0.01 && value > 0 ? 2 : 1)}%`;
}

export function bytes(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let amount = value;
  let unit = 0;
  while (amount >= 1024 && unit < units.length - 1) {
    amount /= 1024;
    unit += 1;
  }
  return `${amount.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "–";
  return new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
