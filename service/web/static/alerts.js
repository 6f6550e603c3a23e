// Live changes from the alert feed: cases are updated, added and highlighted on the map, the
// open panel is refreshed when its case changed, and the latest alerts are listed.
import { addCase, reloadOutlines, updateCase } from "./cases.js";
import { $, element, state } from "./common.js";
import { LiveFeed } from "./live.js";
import { openCase } from "./panel.js";
import { refreshStatisticsIfShown } from "./stats.js";

const LIST_LENGTH = 20; // alerts kept in the sidebar list
const STATE_LABELS = {
  connecting: "live: connecting…",
  open: "live",
  waiting: "live: reconnecting…",
  refused: "live: refused",
  stopped: "live: paused",
};
const MOVED_OUTLINE = new Set(["case_created", "case_updated", "case_reopened"]);
const early = []; // alerts that arrived before the cases were on the map

// Subscribe before the cases are loaded, so no change made meanwhile is missed.
export function startLiveFeed() {
  state.liveAlerts = [];
  state.live = new LiveFeed({ onEvent: receive, onState: showState });
  state.live.start();
}

// The cases are on the map: apply what arrived while they were loading.
export function applyEarlyAlerts() {
  state.casesShown = true;
  for (const alert of early.splice(0)) apply(alert);
}

function showState(name) {
  const badge = $("#live-state");
  badge.dataset.state = name;
  badge.textContent = STATE_LABELS[name] || name;
}

function receive(event) {
  let alert;
  try {
    alert = JSON.parse(event.data);
  } catch (_) {
    return; // not an alert: nothing to show
  }
  if (alert.case_id === null || alert.case_id === undefined) return;
  if (state.casesShown) apply(alert);
  else early.push(alert);
}

function apply(alert) {
  const id = alert.case_id;
  const { status, bbox, case_version: version } = alert.payload;
  // A change this page made itself (or has already read) is not news to its user.
  const news = !(state.knownVersions.get(id) >= version);
  const point = state.cases.get(id);
  if (point) {
    updateCase(id, { status, priority: alert.priority, live: news || Boolean(point.properties.live) });
    if (MOVED_OUTLINE.has(alert.type)) reloadOutlines();
  } else {
    addCase(id, { x: (bbox[0] + bbox[2]) / 2, y: (bbox[1] + bbox[3]) / 2, status, priority: alert.priority });
  }
  state.liveAlerts.push(alert);
  listAlert(alert);
  refreshStatisticsIfShown();
  if (news && state.openCaseId === id && !$("#case-panel").hidden) {
    openCase(id, { acknowledge: false });
  }
}

function listAlert(alert) {
  const time = alert.created_at.slice(11, 16);
  const what = alert.type.replace(/^case_/, "").replaceAll("_", " ");
  const item = element("li", {
    "data-case-id": String(alert.case_id), "data-event-id": String(alert.id),
    "data-status": alert.payload.status,
  }, element("button", { type: "button", className: "link", onclick: () => openCase(alert.case_id) },
    `${time} ${alert.payload.code}`), ` ${what} → ${alert.payload.status}`);
  const list = $("#live-alerts");
  list.prepend(item);
  while (list.children.length > LIST_LENGTH) list.lastElementChild.remove();
}
