// Elements built from data with textContent only: a tenant or key name is never parsed as HTML.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element: Element): void {
  while (element.firstChild) element.removeChild(element.firstChild);
}

let fieldCount = 0;

/** A labelled input: the label's `for` points at the input, so screen readers and clicks find it. */
export function field(label: string, input: HTMLInputElement | HTMLSelectElement, hint?: string): HTMLElement {
  input.id ||= `field-${++fieldCount}`;
  if (!input.name) input.name = input.id;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint ? h("small", {}, hint) : null);
}

export function table(
  id: string,
  caption: string,
  headers: string[],
  rows: Child[][],
  empty = "nothing yet",
): HTMLTableElement {
  const body = h("tbody");
  if (!rows.length) append(body, h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty)));
  for (const row of rows) append(body, h("tr", {}, ...row.map((cell) => h("td", {}, cell))));
  return h(
    "table",
    { id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...headers.map((name) => h("th", { scope: "col" }, name)))),
    body,
  );
}

export function toast(message: string, kind: "ok" | "error" = "ok"): void {
  const box = document.getElementById("toast");
  if (!box) return;
  box.className = kind;
  box.textContent = message;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (box.textContent = ""), 5000);
}

let toastTimer: number | undefined;
