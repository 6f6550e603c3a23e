// The case panel: facts, before/after imagery, detections, layer hits, evidence, history and
// the status moves the signed-in role may make (sent with If-Match).
import { $, api, apiJson, element, state } from "./common.js";
import { STATUS_COLOURS, updateCase } from "./cases.js";

const DISMISSAL_REASONS = [
  "farming_activity", "approved_use", "pre_existing", "detector_error", "duplicate", "other",
];

// --- the case panel --------------------------------------------------------------------

function formatTime(value) {
  return value ? new Date(value).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "—";
}

function section(title, ...content) {
  return [element("h3", {}, title), ...content];
}

function listOrEmpty(items, render, emptyText, tag = "ul") {
  if (!items.length) return element("p", { className: "empty" }, emptyText);
  return element(tag, { className: tag === "ol" ? "timeline" : "plain" }, ...items.map(render));
}

function facts(detail) {
  const rows = [
    ["Priority", String(detail.priority)],
    ["Confidence", `${detail.confidence_level} (${detail.confidence.toFixed(2)})`],
    ["Change", detail.change_types.join(", ") || "—"],
    ["Sources", detail.sources.join(", ") || "—"],
    ["Jurisdiction", detail.jurisdiction || "—"],
    ["Assignee", detail.assignee || "—"],
    ["Area", `${detail.area_mu.toFixed(2)} mu (${Math.round(detail.area_m2)} m²)`],
    ["First seen", formatTime(detail.first_seen_at)],
    ["Last seen", formatTime(detail.last_seen_at)],
    ["Due", `${formatTime(detail.due_at)}${detail.overdue ? " (overdue)" : ""}`],
  ];
  if (detail.escalated) rows.push(["Escalated", detail.escalation_reason || "yes"]);
  const list = element("dl", { className: "facts" });
  for (const [name, value] of rows) list.append(element("dt", {}, name), element("dd", {}, value));
  return list;
}

function detectionItem(d) {
  const hits = d.layer_hits.map((h) => `${h.layer_kind} ${h.overlap_mu.toFixed(2)} mu`).join("; ");
  return element("li", {}, element("span", { className: "when" }, formatTime(d.observed_at)), " ",
    `${d.source}: ${d.change_type} (${d.confidence.toFixed(2)}), ${d.screening}`,
    hits ? element("div", { className: "when" }, `layers: ${hits}`) : null);
}

function historyItem(e) {
  const move = e.to_status ? ` → ${e.to_status}` : "";
  const note = e.payload && e.payload.note ? ` — ${e.payload.note}` : "";
  return element("li", {}, element("span", { className: "when" }, formatTime(e.created_at)), " ",
    `${e.action}${move} by ${e.actor} (${e.role})${note}`);
}

// One piece of evidence; photos and chips get a thumbnail, fetched with the key (an <img src>
// could not send it) and linked to the full image.
function evidenceItem(caseId, e) {
  const where = e.lat === null ? "" : ` at ${e.lat.toFixed(5)}, ${e.lon.toFixed(5)}`;
  const item = element("li", { className: "evidence" },
    `${e.kind} ${formatTime(e.taken_at)} by ${e.uploaded_by}${where}`,
    e.note ? element("div", { className: "when" }, e.note) : null);
  if (!e.media_type.startsWith("image/")) return item;
  const link = element("a", { target: "_blank", rel: "noopener" });
  const thumb = element("img", { className: "thumb", alt: e.note || `${e.kind} ${e.id}` });
  link.append(thumb);
  item.prepend(link);
  api(`/v1/cases/${caseId}/evidence/${e.id}`)
    .then((response) => response.blob())
    .then((blob) => {
      const url = URL.createObjectURL(blob);
      state.blobUrls.push(url);
      thumb.src = url;
      link.href = url;
    })
    .catch(() => link.remove());
  return item;
}

function layerHits(detail) {
  const total = new Map();
  for (const d of detail.detections) {
    for (const h of d.layer_hits) total.set(h.layer_kind, (total.get(h.layer_kind) || 0) + h.overlap_mu);
  }
  return [...total.entries()];
}

async function compareView(caseId) {
  const pair = await apiJson(`/v1/map/cases/${caseId}/imagery`);
  if (!pair.before && !pair.after) {
    return element("p", { className: "empty" }, "No imagery covers this case yet.");
  }
  const image = async (scene, className) => {
    if (!scene) return element("img", { className, alt: "no scene" });
    const blob = await (await api(`/v1/map/cases/${caseId}/chip.png?scene=${scene.scene_id}`)).blob();
    const url = URL.createObjectURL(blob);
    state.blobUrls.push(url);
    const img = element("img", { className, src: url, alt: `scene of ${scene.acquired_at}` });
    await img.decode().catch(() => undefined);
    return img;
  };
  const before = await image(pair.before, "before");
  const after = await image(pair.after, "after");
  const slider = element("input", { type: "range", min: "0", max: "100", value: "50",
    "aria-label": "Move to compare before and after" });
  slider.addEventListener("input", () => {
    after.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
  });
  return element("div", {},
    element("div", { className: "compare" }, before, after, slider),
    element("div", { className: "compare-labels" },
      element("span", {}, `before ${pair.before ? pair.before.acquired_at.slice(0, 10) : "—"}`),
      element("span", {}, `after ${pair.after ? pair.after.acquired_at.slice(0, 10) : "—"}`)));
}

function actionsView(detail) {
  const moves = (state.me && state.me.moves[detail.status]) || [];
  const box = element("div", { className: "actions" });
  if (!moves.length) {
    box.append(element("p", { className: "empty" }, "Your role has no move from this status."));
    return box;
  }
  const note = element("textarea", { id: "transition-note", placeholder: "Note (kept in the history)" });
  const reason = element("select", { id: "dismissal-reason", "aria-label": "Dismissal reason" },
    ...DISMISSAL_REASONS.map((r) => element("option", { value: r }, r.replaceAll("_", " "))));
  const result = element("p", { id: "action-result", role: "status" });
  const buttons = moves.map((to) => element("button", {
    type: "button", "data-to": to, onclick: () => transition(detail.id, to, note.value, reason.value, result),
  }, `→ ${to}`));
  box.append(...buttons, note);
  if (moves.includes("dismissed")) box.append(element("label", {}, "If dismissing: ", reason));
  box.append(result);
  return box;
}

async function transition(caseId, to, note, reason, result) {
  const body = { to };
  if (note.trim()) body.note = note.trim();
  if (to === "dismissed") body.reason_code = reason;
  try {
    const response = await api(`/v1/cases/${caseId}/transitions`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "If-Match": state.openCaseEtag },
      body: JSON.stringify(body),
    });
    const updated = await response.json();
    state.knownVersions.set(caseId, updated.version);
    updateCase(caseId, updated);
    await openCase(caseId);
    $("#action-result").textContent = `moved to ${updated.status}`;
  } catch (error) {
    result.className = "error";
    result.textContent = error.status === 412
      ? "Someone changed this case meanwhile; it has been reloaded, check and try again."
      : error.message;
    if (error.status === 412) await openCase(caseId);
  }
}

// Open (or, with acknowledge false, refresh after a live change) the panel of one case.
// Opening it is what clears the case's live highlight.
export async function openCase(caseId, { acknowledge = true } = {}) {
  const panel = $("#case-panel");
  for (const url of state.blobUrls.splice(0)) URL.revokeObjectURL(url);
  if (state.openCaseId !== null) {
    state.map.setFeatureState({ source: "cases", id: state.openCaseId }, { selected: false });
  }
  state.openCaseId = caseId;
  state.map.setFeatureState({ source: "cases", id: caseId }, { selected: true });
  panel.hidden = false;
  panel.dataset.loaded = "false";
  $("#case-body").replaceChildren(element("p", { className: "empty" }, "Loading…"));
  const response = await api(`/v1/cases/${caseId}`);
  state.openCaseEtag = response.headers.get("ETag");
  const detail = await response.json();
  state.knownVersions.set(caseId, detail.version);
  if (acknowledge) updateCase(caseId, detail);
  const colour = STATUS_COLOURS[detail.status] || "#000";
  const compare = await compareView(caseId).catch((error) =>
    element("p", { className: "error" }, `imagery: ${error.message}`));
  $("#case-title").replaceChildren(`${detail.code} `,
    element("span", { className: "badge", id: "case-status", style: `background:${colour}` }, detail.status));
  $("#case-body").replaceChildren(
    facts(detail),
    ...section("Before / after", compare),
    ...section("Detections", listOrEmpty(detail.detections, detectionItem, "No detections.", "ol")),
    ...section("Legal layers hit", listOrEmpty(layerHits(detail),
      ([kind, mu]) => element("li", {}, `${kind}: ${mu.toFixed(2)} mu`), "No legal layer hit.")),
    ...section("Evidence", listOrEmpty(detail.evidence, (e) => evidenceItem(caseId, e),
      "No evidence yet.")),
    ...section("History", listOrEmpty(detail.history, historyItem, "No history.", "ol")),
    ...section("Actions", actionsView(detail),
      // Opened from this tab, the report shares its signed-in key (sessionStorage is copied).
      element("button", { type: "button", id: "open-report",
        onclick: () => window.open(`/cases/${detail.id}/report`) }, "Printable report")),
  );
  panel.dataset.loaded = "true";
}
