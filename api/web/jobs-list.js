// The jobs list: the tenant's jobs newest first, live. The first page is shown as soon as it
// arrives; older pages follow up to LISTED_AT_ONCE jobs, then a button loads more. One event
// stream (/jobs/events) moves every row's bar and adds new jobs at the top.

import { json } from "./api.js";
import {
  STATUSES,
  count,
  fill,
  h,
  isTerminal,
  pace,
  progressBar,
  progressText,
  statusBadge,
  time,
  updateProgress,
} from "./dom.js";
import { LiveStream } from "./sse.js";

const PAGE = 200;
const LISTED_AT_ONCE = 1000;

export function jobsList(root) {
  document.title = "Jobs · Bulk Ingest";
  const filters = readFilters();
  const rows = new Map(); // job_id -> row
  const list = h("ol", { class: "jobs", "aria-label": "Jobs, newest first" });
  const summary = h("p", { class: "hint", id: "jobs-summary", "aria-live": "polite" });
  const more = h("div", { class: "more" });
  const problem = h("p", { class: "problem", role: "alert" });
  let cursor = null;
  let stopped = false;

  root.append(
    h(
      "div",
      { class: "title-row" },
      h("h1", { tabindex: "-1" }, "Jobs"),
      h("a", { class: "button", href: "#/import" }, "Import a file"),
    ),
    filterForm(filters),
    summary,
    problem,
    list,
    more,
  );

  function add(job, { atTop = false, into = list } = {}) {
    if (rows.has(job.job_id)) return rows.get(job.job_id).update(job);
    const row = jobRow(job);
    rows.set(job.job_id, row);
    if (atTop) list.prepend(row.element);
    else into.append(row.element);
  }

  function showSummary() {
    const shown = `${count(rows.size)} job${rows.size === 1 ? "" : "s"}`;
    summary.textContent = rows.size ? `${shown} shown` : "";
    if (!rows.size && !cursor) {
      fill(list, h("li", { class: "empty" }, emptyText(filters)));
    } else {
      list.querySelector(".empty")?.remove();
    }
  }

  function fetchPage(from) {
    const query = new URLSearchParams({ limit: String(PAGE), ...filters });
    if (from) query.set("cursor", from);
    return json(`/jobs?${query}`);
  }

  async function loadPages(limit) {
    fill(more);
    let left = limit;
    let next = fetchPage(cursor);
    while (next) {
      const page = await next;
      if (stopped) return;
      cursor = page.next_cursor;
      left -= page.jobs.length;
      // The next page is asked for before this one is drawn: the two overlap.
      next = cursor && left > 0 ? fetchPage(cursor) : null;
      const rowsOfPage = document.createDocumentFragment();
      for (const job of page.jobs) add(job, { into: rowsOfPage });
      list.append(rowsOfPage);
      showSummary();
    }
    if (cursor) {
      fill(
        more,
        h("button", { type: "button", onclick: () => load(LISTED_AT_ONCE) }, "Load older jobs"),
      );
    }
  }

  function load(limit) {
    loadPages(limit).catch((error) => {
      if (!stopped) problem.textContent = `Could not load the jobs: ${error.message}`;
    });
  }

  const stream = new LiveStream("/jobs/events", {
    onEvent(type, data) {
      if (type === "progress") rows.get(data.job_id)?.progress(data);
      else if (type === "job" && (rows.has(data.job_id) || matches(data, filters))) {
        add(data, { atTop: true });
        showSummary();
      }
    },
    onError(error) {
      if (!stopped) problem.textContent = `Live updates paused (${error.message}); retrying.`;
    },
    onOpen() {
      problem.textContent = "";
    },
  });

  load(LISTED_AT_ONCE);
  return () => {
    stopped = true;
    stream.close();
  };
}

function readFilters() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = {};
  for (const name of ["status", "entity"]) if (query.get(name)) filters[name] = query.get(name);
  return filters;
}

function matches(job, filters) {
  return Object.entries(filters).every(([name, value]) => job[name] === value);
}

function emptyText(filters) {
  if (Object.keys(filters).length) return "No jobs match these filters.";
  return "No jobs yet. Import a file, or send records to the API.";
}

function filterForm(filters) {
  const status = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((name) =>
      h(
        "option",
        { value: name, selected: filters.status === name },
        name.toLowerCase().replaceAll("_", " "),
      ),
    ),
  );
  const entity = h(
    "select",
    { id: "filter-entity", name: "entity" },
    h("option", { value: "" }, "All entities"),
    filters.entity ? h("option", { value: filters.entity, selected: true }, filters.entity) : null,
  );
  json("/entities")
    .then(({ entities }) => {
      for (const { name } of entities) {
        if (name !== filters.entity) entity.append(h("option", { value: name }, name));
      }
    })
    .catch(() => {}); // the filter still works with what is typed in the URL
  const apply = () => {
    const query = new URLSearchParams();
    if (status.value) query.set("status", status.value);
    if (entity.value) query.set("entity", entity.value);
    location.hash = query.size ? `#/?${query}` : "#/";
  };
  status.addEventListener("change", apply);
  entity.addEventListener("change", apply);
  return h(
    "form",
    { class: "filters", "aria-label": "Filter jobs", onsubmit: (event) => event.preventDefault() },
    h("div", { class: "pair" }, h("label", { for: "filter-status" }, "Status"), status),
    h("div", { class: "pair" }, h("label", { for: "filter-entity" }, "Entity"), entity),
  );
}

/** One job in the list; `update(job)` and `progress(event)` change it in place. */
function jobRow(job) {
  const badge = h("span", { class: "status" });
  const bar = progressBar(job, `Progress of job ${job.job_id.slice(0, 8)}`);
  const done = h("span", { class: "done" });
  const speed = h("span", { class: "pace" });
  const outcomes = h("span", { class: "outcomes" });
  const element = h(
    "li",
    { class: "job", "data-job-id": job.job_id },
    h(
      "div",
      { class: "what" },
      h("a", { href: `#/jobs/${job.job_id}` }, `${job.entity} · ${job.operation}`),
      h("span", { class: "id" }, `${job.source} · ${job.job_id.slice(0, 8)}`),
    ),
    badge,
    h("div", { class: "bar" }, bar, h("span", { class: "numbers" }, done, speed)),
    outcomes,
    h("span", { class: "when" }, time(job.created_at)),
  );
  let status = null;

  function counts(data) {
    updateProgress(bar, data);
    done.textContent = progressText(data);
    const { successful, failed, skipped } = data;
    const parts = [
      `${count(successful)} ok`,
      `${count(failed)} failed`,
      `${count(skipped)} skipped`,
    ];
    outcomes.textContent = parts.join(" · ");
    if (data.status !== status) {
      status = data.status;
      fill(badge, statusBadge(status));
      element.dataset.status = status;
    }
  }

  counts(job);
  return {
    element,
    update(changed) {
      counts(changed);
      if (isTerminal(changed.status)) speed.textContent = "";
    },
    progress(event) {
      counts(event);
      speed.textContent = pace(event);
    },
  };
}
