// One job: live progress (its own event stream until the terminal event), the error breakdown
// by code as a bar chart, the first errors, report and results downloads, and cancel.

import { ApiError, download, json } from "./api.js";
import {
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

const CODES_REFRESH_MS = 2000;

export function jobPage(root, jobId) {
  document.title = "Job · Bulk Ingest";
  const view = new JobView(root, jobId);
  view.start();
  return () => view.stop();
}

class JobView {
  constructor(root, jobId) {
    this.root = root;
    this.jobId = jobId;
    this.path = `/jobs/${encodeURIComponent(jobId)}`;
    this.stream = null;
    this.stopped = false;
    this.codesFetchedAt = 0;
    this.codesTimer = null;
    this.failures = -1;
  }

  async start() {
    const heading = h("h1", { tabindex: "-1" }, "Job");
    this.root.append(h("p", { class: "back" }, h("a", { href: "#/" }, "← All jobs")), heading);
    let job;
    try {
      job = await json(this.path);
    } catch (error) {
      if (this.stopped) return;
      const text =
        error instanceof ApiError && error.status === 404 ? "There is no such job." : error.message;
      this.root.append(h("p", { class: "problem", role: "alert" }, text));
      return;
    }
    if (this.stopped) return;
    this.build(heading, job);
    this.show(job);
    if (!isTerminal(job.status)) this.follow();
  }

  stop() {
    this.stopped = true;
    this.stream?.close();
    clearTimeout(this.codesTimer);
  }

  build(heading, job) {
    document.title = `${job.entity} ${job.operation} job · Bulk Ingest`;
    fill(heading, `${job.entity} · ${job.operation}`);
    this.badge = h("span", { class: "status" });
    this.bar = progressBar(job, "Progress of the job");
    this.done = h("span", { class: "done", id: "job-progress-text" });
    this.speed = h("span", { class: "pace", id: "job-pace" });
    this.numbers = h("dl", { class: "counts" });
    this.reason = h("p", { class: "reason" });
    this.times = h("dl", { class: "times" });
    this.actions = h("div", { class: "actions", role: "group", "aria-label": "Job actions" });
    this.notice = h("p", { class: "notice", role: "status", id: "job-notice" });
    // Each section has its title from the start: aria-labelledby must name an element that
    // exists before the first fetch fills the section (axe: aria-prohibited-attr otherwise).
    this.chart = h("section", { class: "card", "aria-labelledby": "codes-title" }, codesTitle());
    this.errors = h("section", { class: "card", "aria-labelledby": "errors-title" }, errorsTitle());
    this.root.append(
      h(
        "p",
        { class: "id" },
        h("span", {}, "Job "),
        h("code", {}, job.job_id),
        h("span", {}, ` · from ${job.source}`),
        " ",
        this.badge,
      ),
      h(
        "section",
        { class: "card progress", "aria-label": "Progress" },
        this.bar,
        h("p", { class: "numbers" }, this.done, this.speed),
        this.numbers,
        this.reason,
        this.times,
      ),
      this.actions,
      this.notice,
      this.chart,
      this.errors,
    );
  }

  /** A new status brings new times (started_at): read them once from the job. */
  async refreshTimes() {
    const job = await json(this.path).catch(() => null);
    if (!job || this.stopped || isTerminal(this.job.status)) return;
    this.showTimes(job);
  }

  showTimes(job) {
    fill(
      this.times,
      timeEntry("Created", job.created_at),
      timeEntry("Started", job.started_at),
      timeEntry("Ended", job.completed_at),
    );
  }

  show(job) {
    this.job = job;
    fill(this.badge, statusBadge(job.status));
    this.counts(job);
    this.speed.textContent = "";
    this.reason.textContent = job.failure_reason || "";
    this.reason.hidden = !job.failure_reason;
    this.showTimes(job);
    this.showActions(job);
    this.showErrors(job.errors || []);
    this.refreshCodes(true);
  }

  counts(data) {
    updateProgress(this.bar, data);
    this.done.textContent = progressText(data);
    fill(
      this.numbers,
      entry("Successful", count(data.successful)),
      entry("Failed", count(data.failed)),
      entry("Skipped", count(data.skipped)),
      entry(
        "Total",
        data.total > 0 || isTerminal(data.status) ? count(data.total) : "not known yet",
      ),
    );
    const failures = data.failed + data.skipped;
    if (failures !== this.failures) {
      this.failures = failures;
      this.refreshCodes(false);
    }
  }

  follow() {
    this.stream = new LiveStream(`${this.path}/events`, {
      onEvent: (type, data) => {
        if (type === "progress") {
          this.counts(data);
          this.speed.textContent = pace(data);
          if (this.job.status !== data.status) {
            this.job = { ...this.job, status: data.status };
            fill(this.badge, statusBadge(data.status));
            this.refreshTimes();
          }
          return undefined;
        }
        if (type === "terminal") {
          this.show(data);
          return "done";
        }
        return undefined;
      },
      onError: (error) => {
        if (!this.stopped)
          this.notice.textContent = `Live updates paused (${error.message}); retrying.`;
      },
      onOpen: () => {
        if (this.notice.textContent.startsWith("Live updates paused")) this.notice.textContent = "";
      },
      onEnd: async () => {
        // Ended without its terminal event (resumed after it, say): ask the job itself.
        const job = await json(this.path).catch(() => null);
        if (!job || !isTerminal(job.status) || this.stopped) return undefined;
        this.show(job);
        return "done";
      },
    });
  }

  showActions(job) {
    const buttons = [];
    if (!isTerminal(job.status)) {
      buttons.push(
        h(
          "button",
          { type: "button", class: "danger", onclick: () => this.askCancel() },
          "Cancel job",
        ),
      );
      buttons.push(
        h(
          "p",
          { class: "hint" },
          "The report and the results can be downloaded when the job ends.",
        ),
      );
    } else {
      buttons.push(this.downloadButton("Download report (CSV)", `${this.path}/report`));
      buttons.push(this.downloadButton("Download results (ZIP)", `${this.path}/results`));
      buttons.push(this.downloadButton("Results as CSV", `${this.path}/results?format=csv`));
    }
    fill(this.actions, buttons);
  }

  downloadButton(label, path) {
    return h(
      "button",
      {
        type: "button",
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          try {
            this.notice.textContent = `Downloaded ${await download(path)}.`;
          } catch (error) {
            this.notice.textContent = `The download failed: ${error.message}`;
          } finally {
            button.disabled = false;
          }
        },
      },
      label,
    );
  }

  askCancel() {
    const keep = h(
      "button",
      { type: "button", onclick: () => this.showActions(this.job) },
      "Keep it running",
    );
    fill(
      this.actions,
      h(
        "div",
        { class: "confirm", role: "alertdialog", "aria-labelledby": "cancel-question" },
        h(
          "p",
          { id: "cancel-question" },
          "Cancel this job? Records already written stay; every record not written yet ends ",
          "skipped (JobCancelled).",
        ),
        h(
          "button",
          { type: "button", class: "danger", onclick: () => this.cancel() },
          "Yes, cancel the job",
        ),
        keep,
      ),
    );
    keep.focus();
  }

  async cancel() {
    fill(this.actions, h("p", { class: "hint" }, "Cancelling…"));
    try {
      const job = await json(`${this.path}/cancel`, { method: "POST" });
      this.notice.textContent = isTerminal(job.status)
        ? "The job is cancelled."
        : "Cancel requested: records not written yet will be skipped.";
      fill(
        this.actions,
        h("p", { class: "hint" }, "Cancel requested; waiting for the job to end."),
      );
      if (isTerminal(job.status)) this.show(job);
    } catch (error) {
      this.notice.textContent = `The job could not be cancelled: ${error.message}`;
      this.show(await json(this.path));
    }
  }

  refreshCodes(now) {
    clearTimeout(this.codesTimer);
    const wait = now ? 0 : Math.max(0, this.codesFetchedAt + CODES_REFRESH_MS - Date.now());
    this.codesTimer = setTimeout(() => this.loadCodes(), wait);
  }

  async loadCodes() {
    this.codesFetchedAt = Date.now();
    try {
      const { codes } = await json(`${this.path}/error-codes`);
      if (!this.stopped) this.showCodes(codes);
    } catch (error) {
      if (!this.stopped)
        fill(this.chart, codesTitle(), h("p", { class: "problem" }, error.message));
    }
  }

  showCodes(codes) {
    if (!codes.length) {
      fill(this.chart, codesTitle(), h("p", { class: "hint" }, "No failed or skipped records."));
      return;
    }
    fill(this.chart, codesTitle(), barChart(codes));
  }

  showErrors(errors) {
    const title = errorsTitle();
    if (!errors.length) {
      fill(this.errors, title, h("p", { class: "hint" }, "None so far."));
      return;
    }
    fill(
      this.errors,
      title,
      h(
        "p",
        { class: "hint" },
        `The first ${count(errors.length)} failed records, in record order; ` +
          "the report lists them all.",
      ),
      errorTable(errors),
    );
  }
}

function codesTitle() {
  return h("h2", { id: "codes-title" }, "Errors by code");
}

function errorsTitle() {
  return h("h2", { id: "errors-title" }, "First errors");
}

function entry(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function timeEntry(term, iso) {
  return entry(term, iso ? time(iso) : "—");
}

/** A horizontal bar chart as a table: a screen reader reads the numbers, the eye the bars. */
export function barChart(codes) {
  const largest = Math.max(...codes.map((c) => c.count));
  return h(
    "table",
    { class: "bars" },
    h("caption", { class: "sr-only" }, "Failed and skipped records by error code"),
    h(
      "thead",
      { class: "sr-only" },
      h("tr", {}, h("th", { scope: "col" }, "Error code"), h("th", { scope: "col" }, "Records")),
    ),
    h(
      "tbody",
      {},
      codes.map(({ errorCode, count: records }) => {
        const fillBar = h("span", { class: "fill", "aria-hidden": "true" });
        fillBar.style.width = `${Math.max(1, (records / largest) * 100)}%`;
        return h(
          "tr",
          { "data-code": errorCode },
          h("th", { scope: "row" }, errorCode),
          h(
            "td",
            {},
            h("span", { class: "track" }, fillBar),
            h("span", { class: "value" }, count(records)),
          ),
        );
      }),
    ),
  );
}

function errorTable(errors) {
  const columns = ["Record", "Line", "Key", "Code", "Field", "Message"];
  return h(
    "table",
    { class: "errors" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((name) => h("th", { scope: "col" }, name)),
      ),
    ),
    h(
      "tbody",
      {},
      errors.map((error) =>
        h(
          "tr",
          {},
          cell("Record", count(error.index)),
          cell("Line", error.line ?? "—"),
          cell("Key", error.external_id ?? "—"),
          cell("Code", error.errorCode),
          cell("Field", error.field ?? "—"),
          cell("Message", error.message),
        ),
      ),
    ),
  );
}

function cell(label, value) {
  return h("td", { "data-label": label }, value);
}
