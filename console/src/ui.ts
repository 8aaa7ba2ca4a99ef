// Pieces every view uses: forms that show the server's error as it is, a secret shown once with a copy button.
import { ApiError, type Page } from "./api";
import { append, h, table, toast } from "./dom";

export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const where = error.body.param ? ` (${error.body.param})` : "";
    return `${error.body.message}${where}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** A form whose submit runs `action`; a refusal is shown in the form's alert region, the form kept as typed. */
export function form(
  id: string,
  title: string,
  fields: HTMLElement[],
  submit: string,
  action: (data: FormData) => Promise<void>,
): HTMLFormElement {
  const problem = h("p", { class: "error", role: "alert", id: `${id}-error` });
  const button = h("button", { type: "submit" }, submit);
  const element = h("form", { id, class: "inline-form", "aria-label": title }, ...fields, button, problem);
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    button.disabled = true;
    try {
      await action(new FormData(element));
    } catch (error) {
      problem.textContent = errorText(error);
    } finally {
      button.disabled = false;
    }
  });
  return element;
}

export function input(name: string, attrs: Record<string, string | boolean> = {}): HTMLInputElement {
  return h("input", { name, id: `${name}-${Math.random().toString(36).slice(2, 8)}`, ...attrs });
}

/** Optional number fields: empty means "not set" (null), never 0. */
export function numberOrNull(data: FormData, name: string): number | null {
  const value = String(data.get(name) ?? "").trim();
  return value === "" ? null : Number(value);
}

export function text(data: FormData, name: string): string {
  return String(data.get(name) ?? "").trim();
}

/** A secret shown once: a read-only field to select, a copy button, and a warning that it will not come back. */
export function shownOnce(label: string, secret: string): HTMLElement {
  const field = h("input", { readonly: true, value: secret, class: "secret", "aria-label": label, id: "shown-secret" });
  const copy = h("button", { type: "button", class: "copy" }, "Copy");
  copy.addEventListener("click", async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(secret);
      toast("Copied to the clipboard.");
    } catch {
      document.execCommand("copy");
      toast("Copied.");
    }
  });
  return h(
    "div",
    { class: "once", role: "region", "aria-label": label },
    h("strong", {}, label),
    h("div", { class: "row" }, field, copy),
    h("p", { class: "warn" }, "Store it now: it is shown only this once."),
  );
}

/** `name` is what a screen reader announces when the visible label alone ("Revoke") does not say which one. */
export function actionButton(label: string, work: () => Promise<void>, confirmText?: string, name?: string): HTMLButtonElement {
  const button = h("button", { type: "button", class: "small", "aria-label": name }, label);
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      toast(errorText(error), "error");
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "panel", "aria-label": title }, h("h2", {}, title), ...children);
}

type Cell = Parameters<typeof append>[1];

export interface Paged<T> {
  element: HTMLElement;
  /** Redraws the row of an item already shown (after a change to it), leaving the pages loaded as they are. */
  update(item: T): void;
}

/**
 * A table of the admin API's pages: the first page, then a "Load more" button that asks for the next one with
 * `after` (the last id shown) for as long as the API answers `has_more`, rows appended below those loaded.
 */
export function pagedTable<T extends { id: string }>(
  id: string,
  caption: string,
  headers: string[],
  first: Page<T>,
  next: (after: string) => Promise<Page<T>>,
  cells: (item: T) => Cell[],
  empty = "nothing yet",
): Paged<T> {
  const element = table(id, caption, headers, [], empty);
  const body = element.tBodies[0];
  const more = h("button", { type: "button", class: "small more", id: `${id}-more` }, "Load more");
  const status = h("p", { class: "muted", id: `${id}-count`, "aria-live": "polite" });
  let last: string | null = null;
  let shown = 0;
  const row = (item: T) => h("tr", { "data-id": item.id }, ...cells(item).map((cell) => h("td", {}, cell)));
  const add = (page: Page<T>) => {
    if (page.data.length && shown === 0) body.replaceChildren();
    for (const item of page.data) body.append(row(item));
    shown += page.data.length;
    last = page.last_id;
    more.hidden = !page.has_more || last === null;
    status.textContent = page.has_more ? `${shown} shown; there are more.` : shown > 0 ? `${shown} shown, all of them.` : "";
  };
  more.addEventListener("click", async () => {
    if (last === null) return;
    more.disabled = true;
    try {
      add(await next(last));
    } catch (error) {
      toast(errorText(error), "error");
    } finally {
      more.disabled = false;
    }
  });
  add(first);
  return {
    element: h("div", { class: "paged" }, element, h("div", { class: "paging" }, status, more)),
    update(item: T) {
      const old = [...body.rows].find((tr) => tr.dataset.id === item.id);
      old?.replaceWith(row(item));
    },
  };
}
