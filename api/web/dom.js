// Building the page: elements from plain data (text is always text, never parsed as HTML),
// and the few formats every view shares.

/**
 * An element: h("a", {href: "#/"}, "Jobs"). Attributes set with setAttribute, except `class`,
 * `text`, `on*` (listeners) and properties given as `prop:name`; children are nodes, strings
 * or arrays of them; null and false are left out.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name.startsWith("prop:")) element[name.slice(5)] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `element` with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function count(value) {
  return integer.format(value ?? 0);
}

export function rate(recordsPerSecond) {
  if (!recordsPerSecond) return "";
  return `${count(recordsPerSecond)} records/s`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${whole % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const moment = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A <time> element for an ISO timestamp of the API (or an empty string). */
export function time(iso) {
  if (!iso) return "";
  return h("time", { datetime: iso }, moment.format(new Date(iso)));
}

export const TERMINAL = new Set([
  "COMPLETED",
  "COMPLETED_WITH_ERRORS",
  "FAILED",
  "INTERNAL_FAILURE",
  "CANCELLED",
]);

export const STATUSES = ["PENDING", "READY", "STARTED", ...TERMINAL];

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** The status as a badge: words a person reads, the API's name in the class for colour. */
export function statusBadge(status) {
  const label = status.toLowerCase().replaceAll("_", " ");
  return h("span", { class: `badge badge-${status.toLowerCase()}` }, label);
}

/**
 * A progress bar of a job: determinate once the total is known, indeterminate while a file
 * is still being read (total 0) and the job runs.
 */
export function progressBar(job, label) {
  const bar = h("progress", { "aria-label": label });
  updateProgress(bar, job);
  return bar;
}

export function updateProgress(bar, job) {
  if (job.total > 0) {
    bar.max = job.total;
    bar.value = Math.min(job.processed, job.total);
  } else if (isTerminal(job.status)) {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute("value");
  }
}

/** "12,000 of 20,000" (or "12,000 read" while the total is not known yet). */
export function progressText(job) {
  if (job.total > 0 || isTerminal(job.status)) {
    return `${count(job.processed)} of ${count(job.total)}`;
  }
  return `${count(job.processed)} read so far`;
}

/** Rate and ETA of a live progress event, as one line (empty when not moving). */
export function pace(progress) {
  if (!progress || isTerminal(progress.status)) return "";
  const parts = [rate(progress.records_per_second)];
  const eta = duration(progress.eta_seconds);
  if (eta) parts.push(`about ${eta} left`);
  return parts.filter(Boolean).join(" · ");
}
