// The cases on the map: points for every case (clustered when zoomed out), outlines of the
// cases in view once zoomed in, and the highlight of cases the live feed has just changed.
import { $, apiJson, setStatus, state } from "./common.js";

// Below this zoom cases are drawn as points, clustered when crowded: outlines of thousands of
// 10-50 m plots cost transfer and rendering time and are too small to see there anyway.
export const POLYGON_MIN_ZOOM = 16;
// Outlines are fetched for the view widened by this fraction on each side, so small pans
// need no new request.
const OUTLINE_MARGIN = 0.5;
export const STATUS_COLOURS = {
  new: "#e53935",
  dispatched: "#fb8c00",
  verifying: "#fdd835",
  confirmed: "#8e24aa",
  rectifying: "#1e88e5",
  rectified: "#00897b",
  closed: "#757575",
  dismissed: "#bdbdbd",
};
const LIVE_COLOUR = "#00e5ff";

function statusColour() {
  const expression = ["match", ["get", "status"]];
  for (const [status, colour] of Object.entries(STATUS_COLOURS)) expression.push(status, colour);
  expression.push("#000000");
  return expression;
}

const isLive = ["boolean", ["get", "live"], false];

export function addCaseSources(map) {
  const empty = { type: "FeatureCollection", features: [] };
  map.addSource("cases", { type: "geojson", data: empty, promoteId: "id" });
  map.addSource("case-points", {
    // Crowded points are clustered up to the zoom where outlines take over: ten thousand
    // single circles redrawn on every frame make the page sluggish on software rendering.
    // 30 px keeps cases 150 m apart single at zoom 15 (about 35 px there).
    type: "geojson", data: empty, cluster: true, clusterRadius: 30,
    clusterMaxZoom: POLYGON_MIN_ZOOM - 1,
  });
}

export function addCaseLayers(map) {
  const radius = ["interpolate", ["linear"], ["get", "priority"], 0, 5, 100, 11];
  map.addLayer({
    id: "case-clusters", type: "circle", source: "case-points", filter: ["has", "point_count"],
    paint: {
      "circle-color": "#e53935", "circle-opacity": 0.75,
      "circle-radius": ["interpolate", ["linear"], ["get", "point_count"], 2, 12, 1000, 30],
      "circle-stroke-color": "#ffffff", "circle-stroke-width": 2,
    },
  });
  map.addLayer({
    id: "case-points", type: "circle", source: "case-points",
    filter: ["!", ["has", "point_count"]], maxzoom: POLYGON_MIN_ZOOM,
    paint: {
      "circle-color": statusColour(), "circle-radius": radius,
      "circle-stroke-color": ["case", isLive, LIVE_COLOUR, "#ffffff"],
      "circle-stroke-width": ["case", isLive, 4, 1.5],
    },
  });
  map.addLayer({
    id: "case-fill", type: "fill", source: "cases", minzoom: POLYGON_MIN_ZOOM,
    paint: { "fill-color": statusColour(), "fill-opacity": 0.45 },
  });
  map.addLayer({
    id: "case-outline", type: "line", source: "cases", minzoom: POLYGON_MIN_ZOOM,
    paint: {
      "line-color": ["case", ["boolean", ["feature-state", "selected"], false], LIVE_COLOUR,
        isLive, LIVE_COLOUR, statusColour()],
      "line-width": ["case", isLive, 4, 2],
    },
  });
}

export function caseLayerIds() {
  return ["case-clusters", "case-points", "case-fill", "case-outline"];
}

// --- the data behind the layers --------------------------------------------------------

export function centreOf(id) {
  return state.cases.get(id).geometry.coordinates;
}

function withCurrentProperties(outline) {
  const point = state.cases.get(outline.id);
  return point ? { ...outline, properties: { ...outline.properties, ...point.properties } } : outline;
}

function refreshOutlines() {
  const outlines = [...state.outlines.values()].map(withCurrentProperties);
  state.map.getSource("cases").setData({ type: "FeatureCollection", features: outlines });
}

export function refreshCaseSources() {
  const points = [...state.cases.values()];
  state.map.getSource("case-points").setData({ type: "FeatureCollection", features: points });
  refreshOutlines();
  $("#case-count").textContent = `${points.length} cases`;
  $("#case-count").dataset.count = String(points.length);
}

// Changes that arrive together (a replay after a reconnect can bring hundreds) are drawn
// together: each redraw re-clusters every point.
let refreshTimer = null;

function scheduleRefresh() {
  refreshTimer ??= setTimeout(() => {
    refreshTimer = null;
    refreshCaseSources();
  }, 50);
}

export function showCases(collection, started) {
  state.cases = new Map(collection.features.map((f) => [f.id, f]));
  refreshCaseSources();
  state.map.once("idle", () => {
    state.firstRenderMs = Math.round(performance.now() - started);
    document.body.dataset.casesRendered = "true";
    setStatus(`${state.cases.size} cases drawn ${state.firstRenderMs} ms after sign-in`);
  });
}

// A case changed (by this page or, through the live feed, by someone else): new status and
// priority; `live` marks it until the user opens it.
export function updateCase(id, { status, priority, live = false }) {
  const point = state.cases.get(id);
  if (!point) return;
  const old = point.properties;
  if (old.status === status && old.priority === priority && Boolean(old.live) === live) return;
  const properties = { ...old, status, priority: priority ?? old.priority };
  if (live) properties.live = true;
  else delete properties.live;
  state.cases.set(id, { ...point, properties });
  scheduleRefresh();
}

// A case the page has not seen yet (opened, or moved into the caller's area): its point.
export function addCase(id, { x, y, status, priority }) {
  state.cases.set(id, {
    type: "Feature", id, geometry: { type: "Point", coordinates: [x, y] },
    properties: { id, status, priority, live: true },
  });
  scheduleRefresh();
  reloadOutlines(); // the outlines in view may now miss it
}

// An outline changed or appeared: fetch the outlines around the view again.
export function reloadOutlines() {
  state.outlineBox = null;
  return loadOutlinesInView();
}

// --- outlines, for the view only -------------------------------------------------------

let outlineRequest = null;

function contains(outer, inner) {
  return outer && outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] && outer[3] >= inner[3];
}

function viewBox(margin) {
  const bounds = state.map.getBounds();
  const [w, s, e, n] = [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()];
  const dx = (e - w) * margin;
  const dy = (n - s) * margin;
  return [w - dx, s - dy, e + dx, n + dy].map((v) => Number(v.toFixed(6)));
}

// Fetch the outlines around the view when zoomed in; resolves once they are on the map.
export function loadOutlinesInView() {
  if (state.map.getZoom() < POLYGON_MIN_ZOOM || contains(state.outlineBox, viewBox(0))) {
    return state.outlinesLoaded;
  }
  if (outlineRequest) outlineRequest.abort();
  outlineRequest = new AbortController();
  const box = viewBox(OUTLINE_MARGIN);
  state.outlinesLoaded = apiJson(`/v1/map/cases.geojson?bbox=${box.join(",")}`,
    { signal: outlineRequest.signal })
    .then((collection) => {
      state.outlines = new Map(collection.features.map((f) => [f.id, f]));
      state.outlineBox = box;
      refreshOutlines(); // the points are unchanged: no need to cluster them again
    })
    .catch((error) => {
      if (error.name !== "AbortError") setStatus(`outlines: ${error.message}`);
    });
  return state.outlinesLoaded;
}
