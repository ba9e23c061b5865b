// A file import: upload a file (POST /files), preview its columns, map each to a field of the
// entity (pre-filled with the service's default mapping), and start the import (POST /imports).

import { ApiError, call, json } from "./api.js";
import { count, fill, h } from "./dom.js";

const OPERATIONS = ["insert", "upsert", "update"];

export function importPage(root) {
  document.title = "Import a file · Bulk Ingest";
  const view = new ImportView(root);
  view.start();
  return () => {
    view.stopped = true;
  };
}

/**
 * The service's default mapping (domain/import_mapping.py): a column maps to the field whose
 * path equals its name, case-insensitively; a name that appears twice maps nothing.
 */
export function defaultMapping(columns, fields) {
  const byLowerPath = new Map(fields.map((field) => [field.path.toLowerCase(), field.path]));
  const mapping = {};
  for (const column of columns) {
    mapping[column] = isDuplicate(columns, column)
      ? null
      : (byLowerPath.get(column.trim().toLowerCase()) ?? null);
  }
  return mapping;
}

function isDuplicate(columns, column) {
  return columns.filter((other) => other.toLowerCase() === column.toLowerCase()).length > 1;
}

class ImportView {
  constructor(root) {
    this.root = root;
    this.stopped = false;
    this.file = null; // the uploaded file's profile
    this.entity = null; // the chosen entity's description
    this.inputs = new Map(); // column -> its target input
  }

  async start() {
    this.entitySelect = h("select", { id: "import-entity", name: "entity" });
    this.operationSelect = h(
      "select",
      { id: "import-operation", name: "operation" },
      OPERATIONS.map((name) => h("option", { value: name }, name)),
    );
    this.fileInput = h("input", {
      id: "import-file",
      name: "file",
      type: "file",
      accept: ".csv,.tsv,.txt,.zip,.xlsx,.ndjson,.jsonl",
      "aria-describedby": "import-file-help",
      onchange: () => this.upload(),
    });
    this.status = h("p", { class: "notice", role: "status" });
    this.problems = h("div", { class: "problem", role: "alert" });
    this.preview = h("section", {
      class: "card",
      id: "preview",
      "aria-labelledby": "preview-title",
      hidden: true,
    });
    this.paths = h("datalist", { id: "field-paths" });
    this.root.append(
      h("h1", { tabindex: "-1" }, "Import a file"),
      h(
        "form",
        { class: "card choose", onsubmit: (event) => event.preventDefault() },
        h(
          "div",
          { class: "field" },
          h("label", { for: "import-entity" }, "Entity"),
          this.entitySelect,
        ),
        h(
          "div",
          { class: "field" },
          h("label", { for: "import-operation" }, "Operation"),
          this.operationSelect,
        ),
        h(
          "div",
          { class: "field wide" },
          h("label", { for: "import-file" }, "File"),
          this.fileInput,
          h(
            "p",
            { class: "hint", id: "import-file-help" },
            "CSV, ZIP holding one CSV or NDJSON, XLSX, or NDJSON.",
          ),
        ),
      ),
      this.status,
      this.problems,
      this.preview,
      this.paths,
    );
    // A file may be chosen before the entity's fields are here: its preview waits for them.
    this.entityReady = this.loadEntities();
  }

  async loadEntities() {
    try {
      const { entities } = await json("/entities");
      fill(
        this.entitySelect,
        entities.map(({ name }) => h("option", { value: name }, name)),
      );
      this.entitySelect.addEventListener("change", () => {
        this.entityReady = this.chooseEntity();
      });
      await this.chooseEntity();
    } catch (error) {
      if (!this.stopped)
        this.problems.textContent = `Could not load the entities: ${error.message}`;
    }
  }

  async chooseEntity() {
    const name = this.entitySelect.value;
    const entity = await json(`/entities/${encodeURIComponent(name)}`);
    if (this.stopped || name !== this.entitySelect.value) return;
    this.entity = entity;
    fill(
      this.paths,
      entity.fields.map((field) => h("option", { value: field.path })),
    );
    if (this.file) this.showPreview();
  }

  async upload() {
    const chosen = this.fileInput.files[0];
    if (!chosen) return;
    this.problems.textContent = "";
    this.preview.hidden = true;
    this.status.textContent = `Uploading ${chosen.name}…`;
    try {
      const query = new URLSearchParams({ filename: chosen.name });
      const answer = await call(`/files?${query}`, {
        method: "POST",
        body: chosen,
        headers: { "Content-Type": chosen.type || "application/octet-stream" },
      });
      this.file = await answer.json();
    } catch (error) {
      this.file = null;
      this.status.textContent = "";
      this.showProblems(error);
      return;
    }
    await this.entityReady;
    if (this.stopped || !this.entity) return;
    const columns = count(this.file.columns.length);
    this.status.textContent = `Uploaded ${chosen.name}: ${columns} columns.`;
    this.showPreview();
  }

  showPreview() {
    const file = this.file;
    const mapping = defaultMapping(file.columns, this.entity.fields);
    this.inputs.clear();
    const facts = [
      ["File", file.filename || file.file_id],
      ["Format", file.format + (file.member ? ` (${file.member.name})` : "")],
      ["Size", `${count(file.size)} bytes`],
      ["Encoding", file.encoding],
      ["Delimiter", file.delimiter ? JSON.stringify(file.delimiter) : null],
      ["Sheet", file.sheets ? file.sheets[0] : null],
    ].filter(([, value]) => value);
    this.missing = h("p", { class: "warning", id: "mapping-missing", "aria-live": "polite" });
    this.startProblems = h("div", { class: "problem", role: "alert", id: "start-problem" });
    this.startButton = h("button", { type: "submit" }, "Start import");
    fill(
      this.preview,
      h("h2", { id: "preview-title" }, "Columns and fields"),
      h(
        "dl",
        { class: "facts" },
        facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))),
      ),
      (file.warnings || []).map((warning) => h("p", { class: "warning" }, warning)),
      h(
        "p",
        { class: "hint" },
        `Each column goes to the ${this.entity.name} field named beside it; `,
        "leave a field empty to skip that column. Nested fields are dotted: addresses.0.city.",
      ),
      h(
        "form",
        { class: "mapping", onsubmit: (event) => this.startImport(event) },
        h(
          "table",
          { class: "mapping-table" },
          h("caption", { class: "sr-only" }, "Column mapping"),
          h(
            "thead",
            {},
            h("tr", {}, h("th", { scope: "col" }, "Column"), h("th", { scope: "col" }, "Field")),
          ),
          h(
            "tbody",
            {},
            file.columns.map((column, position) => this.mappingRow(column, position, mapping)),
          ),
        ),
        this.missing,
        this.startProblems,
        h("div", { class: "actions" }, this.startButton),
      ),
    );
    this.preview.hidden = false;
    this.checkMapping();
  }

  mappingRow(column, position, mapping) {
    const id = `map-${position}`;
    const duplicate = isDuplicate(this.file.columns, column);
    const input = h("input", {
      id,
      type: "text",
      list: "field-paths",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "not imported",
      "data-column": column,
      disabled: duplicate,
      "prop:value": mapping[column] ?? "",
      oninput: () => this.checkMapping(),
    });
    if (!duplicate) this.inputs.set(column, input);
    const note = duplicate
      ? h("span", { class: "hint" }, "This name appears twice: it cannot be mapped.")
      : null;
    return h(
      "tr",
      {},
      h(
        "th",
        { scope: "row" },
        h("label", { for: id }, column || `(column ${position + 1}, no name)`),
      ),
      h("td", {}, input, note),
    );
  }

  mappedTargets() {
    const mapping = {};
    for (const [column, input] of this.inputs) mapping[column] = input.value.trim() || null;
    return mapping;
  }

  checkMapping() {
    const targets = Object.values(this.mappedTargets()).filter(Boolean);
    const missing = this.entity.fields
      .filter((field) => field.required && !targets.includes(field.path))
      .map((field) => field.path);
    const twice = [...new Set(targets.filter((target, i) => targets.indexOf(target) !== i))];
    const notes = [];
    if (missing.length) notes.push(`Required and not mapped: ${missing.join(", ")}.`);
    if (twice.length) notes.push(`Mapped from two columns: ${twice.join(", ")}.`);
    this.missing.textContent = notes.join(" ");
  }

  async startImport(event) {
    event.preventDefault();
    fill(this.startProblems);
    this.startButton.disabled = true;
    const body = {
      file_id: this.file.file_id,
      entity: this.entity.name,
      operation: this.operationSelect.value,
      field_mappings: this.mappedTargets(),
    };
    try {
      const job = await json("/imports", { method: "POST", body });
      location.hash = `#/jobs/${job.job_id}`;
    } catch (error) {
      this.showProblems(error, this.startProblems); // beside the button just pressed
      this.startProblems.scrollIntoView({ block: "nearest" });
      this.startButton.disabled = false;
    }
  }

  showProblems(error, where = this.problems) {
    if (!(error instanceof ApiError) || !error.errors.length) {
      where.textContent = error.message;
      return;
    }
    fill(
      where,
      h(
        "p",
        {},
        error.status === 409 ? "The import cannot start yet:" : "The service refused this:",
      ),
      h(
        "ul",
        {},
        error.errors.map((e) => h("li", {}, `${e.message}${e.field ? ` (${e.field})` : ""}`)),
      ),
    );
  }
}
