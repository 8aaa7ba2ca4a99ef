// Pieces every view uses: forms that show the server's error as it is, a secret shown once with a copy button.
import { ApiError } from "./api";
import { h, toast } from "./dom";

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

export function actionButton(label: string, work: () => Promise<void>, confirmText?: string): HTMLButtonElement {
  const button = h("button", { type: "button", class: "small" }, label);
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
