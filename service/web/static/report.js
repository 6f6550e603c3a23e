// The printable case report at /cases/{id}/report: the evidence sheet an inspector takes to the
// field. Like the map, it reads the case through the API with the key of this browser tab.
import { $, api, apiJson, apiKey, askForKey, element, saveKey, state } from "./common.js";

const caseId = Number(location.pathname.split("/")[2]);
const DRAWING_SIDE = 300; // the outline drawing's viewBox, px
const DRAWING_MARGIN = 30;
const MAX_VERTEX_LABELS = 40; // beyond this the numbers would hide the outline
const METRES_PER_DEGREE_LAT = 110_574;
const METRES_PER_DEGREE_LON_EQUATOR = 111_320;
const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace name, never fetched

const degrees = (value) => value.toFixed(6); // a millionth of a degree: about 0.1 m
const formatTime = (value) =>
  value ? new Date(value).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "—";
const words = (key) => String(key).replaceAll("_", " ");

// --- geometry --------------------------------------------------------------------------

function polygonsOf(geometry) {
  return geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
}

// Shoelace sums relative to `origin`: products of raw degrees (120 × 30) would cancel out
// the few significant digits a plot of land has.
function ringSums(ring, [ox, oy]) {
  let area = 0;
  let x = 0;
  let y = 0;
  for (let i = 0; i < ring.length - 1; i++) {
    const [x0, y0] = [ring[i][0] - ox, ring[i][1] - oy];
    const [x1, y1] = [ring[i + 1][0] - ox, ring[i + 1][1] - oy];
    const cross = x0 * y1 - x1 * y0;
    area += cross;
    x += (x0 + x1) * cross;
    y += (y0 + y1) * cross;
  }
  return { area: area / 2, x: x / 6, y: y / 6 };
}

// The area-weighted centroid in lon/lat; planar sums are exact enough over a plot of land.
export function centroid(geometry) {
  const origin = polygonsOf(geometry)[0][0][0];
  let area = 0;
  let x = 0;
  let y = 0;
  for (const rings of polygonsOf(geometry)) {
    rings.forEach((ring, index) => {
      const sums = ringSums(ring, origin);
      // Holes take away whatever the winding order of the file was.
      const sign = (index === 0 ? 1 : -1) * Math.sign(sums.area);
      area += sign * sums.area;
      x += sign * sums.x;
      y += sign * sums.y;
    });
  }
  return [origin[0] + x / area, origin[1] + y / area];
}

// Every corner of the outline (the closing repeat left out), numbered as on the drawing.
export function vertices(geometry) {
  const rows = [];
  polygonsOf(geometry).forEach((rings, part) => {
    rings.forEach((ring, ringIndex) => {
      for (const [lon, lat] of ring.slice(0, -1)) {
        rows.push({ number: rows.length + 1, part: part + 1, hole: ringIndex > 0, lon, lat });
      }
    });
  });
  return rows;
}

// --- the outline drawing ---------------------------------------------------------------

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function niceLength(metres) {
  const power = 10 ** Math.floor(Math.log10(metres));
  return [5, 2, 1].map((f) => f * power).find((length) => length <= metres) || power;
}

function outlineDrawing(geometry, centre, corners) {
  const perLon = METRES_PER_DEGREE_LON_EQUATOR * Math.cos((centre[1] * Math.PI) / 180);
  const local = ([lon, lat]) => [(lon - centre[0]) * perLon, (lat - centre[1]) * METRES_PER_DEGREE_LAT];
  const points = corners.map((c) => local([c.lon, c.lat]));
  const span = Math.max(...points.map(([x, y]) => Math.max(Math.abs(x), Math.abs(y))), 1) * 2;
  const scale = (DRAWING_SIDE - 2 * DRAWING_MARGIN) / span; // px per metre
  const px = ([x, y]) => [DRAWING_SIDE / 2 + x * scale, DRAWING_SIDE / 2 - y * scale];
  const drawing = svg("svg", { viewBox: `0 0 ${DRAWING_SIDE} ${DRAWING_SIDE}`, class: "outline",
    role: "img", "aria-label": "Outline of the case, north up" });
  for (const rings of polygonsOf(geometry)) {
    const d = rings.map((ring) => `M${ring.map((p) => px(local(p)).join(",")).join("L")}Z`).join(" ");
    drawing.append(svg("path", { d, "fill-rule": "evenodd" }));
  }
  if (corners.length <= MAX_VERTEX_LABELS) {
    corners.forEach((corner, i) => {
      const [x, y] = px(points[i]);
      drawing.append(svg("circle", { cx: x, cy: y, r: 2.5, fill: "#c62828" }),
        svg("text", { x: x + 4, y: y - 4 }, String(corner.number)));
    });
  }
  const [cx, cy] = px([0, 0]);
  drawing.append(svg("text", { x: cx - 4, y: cy + 4 }, "+"));
  const bar = niceLength(span / 3);
  const y = DRAWING_SIDE - 12;
  drawing.append(svg("line", { x1: 12, y1: y, x2: 12 + bar * scale, y2: y, class: "scale" }),
    svg("text", { x: 12, y: y - 5 }, `${bar} m`),
    svg("text", { x: DRAWING_SIDE - 22, y: 20 }, "N ↑"));
  return drawing;
}

// --- imagery ---------------------------------------------------------------------------

// One scene around the case with its outline; a missing image leaves the rest of the sheet.
async function chip(scene, label) {
  if (!scene) return element("figure", {}, element("p", { className: "empty" }, `No ${label} scene.`));
  let blob;
  try {
    blob = await (await api(`/v1/map/cases/${caseId}/chip.png?scene=${scene.scene_id}`)).blob();
  } catch (error) {
    return element("figure", {}, element("p", { className: "error" }, `${label}: ${error.message}`));
  }
  const img = element("img", { src: URL.createObjectURL(blob), alt: `${label} imagery`, className: label });
  await img.decode().catch(() => undefined);
  return element("figure", {}, img,
    element("figcaption", {}, `${label}: scene ${scene.scene_id}, ${formatTime(scene.acquired_at)}`));
}

// --- sections --------------------------------------------------------------------------

function table(headings, rows, emptyText) {
  if (!rows.length) return element("p", { className: "empty" }, emptyText);
  const head = element("tr", {}, ...headings.map((h) => element("th", {}, h)));
  const body = rows.map((cells) => element("tr", {}, ...cells.map((cell) =>
    typeof cell === "number" ? element("td", { className: "number" }, String(cell)) : element("td", {}, cell))));
  return element("table", {}, element("thead", {}, head), element("tbody", {}, ...body));
}

function facts(detail) {
  const rows = [
    ["Status", words(detail.status)], ["Priority", String(detail.priority)],
    ["Change", detail.change_types.map(words).join(", ") || "—"],
    ["Confidence", `${detail.confidence_level} (${detail.confidence.toFixed(2)})`],
    ["Area", `${detail.area_mu.toFixed(2)} mu (${Math.round(detail.area_m2)} m²)`],
    ["Sources", detail.sources.map(words).join(", ") || "—"],
    ["Jurisdiction", detail.jurisdiction || "—"], ["Assignee", detail.assignee || "—"],
    ["First seen", formatTime(detail.first_seen_at)], ["Last seen", formatTime(detail.last_seen_at)],
    ["Changed after", formatTime(detail.onset_after)], ["Changed before", formatTime(detail.onset_before)],
    ["Likely began", formatTime(detail.onset_likeliest)],
    ["Due", `${formatTime(detail.due_at)}${detail.overdue ? " (overdue)" : ""}`],
  ];
  if (detail.escalated) rows.push(["Escalated", detail.escalation_reason || "yes"]);
  const list = element("dl", { className: "facts" });
  for (const [name, value] of rows) list.append(element("dt", {}, name), element("dd", {}, value));
  return list;
}

// A case grown in places apart, begun at different times: when each place began.
function placesApart(detail) {
  if (!detail.onset_parts.length) return [];
  const rows = detail.onset_parts.map((part, index) => [index + 1, formatTime(part.first_seen),
    formatTime(part.last_unchanged), formatTime(part.first_visible), formatTime(part.likeliest_onset)]);
  return [element("h2", {}, "When each place began"),
    table(["place", "first seen", "changed after", "changed before", "likely began"], rows, "")];
}

function layerHitRows(detail) {
  const total = new Map();
  for (const detection of detail.detections) {
    for (const hit of detection.layer_hits) {
      const key = `${hit.layer_kind}|${hit.layer_version_id}`;
      const sum = total.get(key) || { kind: hit.layer_kind, version: hit.layer_version_id, m2: 0, mu: 0 };
      sum.m2 += hit.overlap_m2;
      sum.mu += hit.overlap_mu;
      total.set(key, sum);
    }
  }
  return [...total.values()].map((h) => [words(h.kind), h.version, Math.round(h.m2), Number(h.mu.toFixed(2))]);
}

function timelineRows(detail) {
  const detections = detail.detections.map((d) => [d.observed_at, "detection",
    `${words(d.change_type)} by ${words(d.source)} (confidence ${d.confidence.toFixed(2)}, ` +
    `${Math.round(d.area_m2)} m²), ${words(d.screening)}`]);
  const history = detail.history.map((e) => [e.created_at, words(e.action),
    `${e.to_status ? `→ ${e.to_status} ` : ""}by ${e.actor} (${e.role})` +
    `${e.payload && e.payload.note ? ` — ${e.payload.note}` : ""}`]);
  return [...detections, ...history]
    .sort((a, b) => new Date(a[0]) - new Date(b[0]))
    .map(([at, what, text]) => [formatTime(at), what, text]);
}

function coordinates(centre, corners, bbox) {
  return element("div", {},
    element("p", { id: "centroid" }, element("strong", {}, "Centroid: "),
      `${degrees(centre[0])}° E, ${degrees(centre[1])}° N`,
      element("span", { className: "muted" },
        ` (lon/lat, CGCS2000 ≈ WGS 84; extent ${bbox.map(degrees).join(", ")})`)),
    table(["#", "part", "longitude (° E)", "latitude (° N)"],
      corners.map((c) => [c.number, c.hole ? `${c.part} (hole)` : String(c.part), degrees(c.lon), degrees(c.lat)]),
      "No outline."));
}

async function render(detail, me, pair) {
  const centre = centroid(detail.geometry);
  const corners = vertices(detail.geometry);
  const images = await Promise.all([chip(pair.before, "before"), chip(pair.after, "after")]);
  state.report = { centroid: centre, vertices: corners };
  document.title = `${detail.code} — 天巡 case report`;
  $("#report-meta").textContent = `Printed ${formatTime(new Date().toISOString())} by ${me.name} ` +
    `(${me.role}) · case version ${detail.version}`;
  $("#report").replaceChildren(
    element("h2", { id: "case-code" }, `Case ${detail.code}`),
    facts(detail),
    ...placesApart(detail),
    element("h2", {}, "Location and imagery"),
    element("div", { className: "figures" },
      element("figure", {}, outlineDrawing(detail.geometry, centre, corners),
        element("figcaption", {}, "Outline, north up; numbers are the corners below")),
      ...images),
    element("h2", {}, "Coordinates"),
    coordinates(centre, corners, detail.bbox),
    element("h2", {}, "Legal layers hit"),
    table(["layer", "version id", "overlap m²", "overlap mu"], layerHitRows(detail), "No legal layer hit."),
    element("h2", {}, "Timeline"),
    table(["time", "what", "details"], timelineRows(detail), "Nothing recorded."),
    element("h2", {}, "Evidence"),
    table(["kind", "taken", "where (lon, lat)", "by", "note"], detail.evidence.map((e) =>
      [words(e.kind), formatTime(e.taken_at), e.lon === null ? "—" : `${degrees(e.lon)}, ${degrees(e.lat)}`,
        e.uploaded_by, e.note || ""]), "No evidence yet."),
    element("h2", {}, "Field verification"),
    element("div", { className: "signatures" },
      element("div", {}, "Result on site"), element("div", {}, "Inspector"), element("div", {}, "Date")),
  );
}

async function start() {
  try {
    const [detail, me, pair] = await Promise.all([
      apiJson(`/v1/cases/${caseId}`), apiJson("/v1/map/me"),
      apiJson(`/v1/map/cases/${caseId}/imagery`).catch(() => ({ before: null, after: null })),
    ]);
    await render(detail, me, pair);
  } catch (error) {
    if (error.status === 401) return; // asked for the key again
    $("#report").replaceChildren(element("p", { className: "error", id: "report-error" },
      `This report cannot be shown: ${error.message}`));
  }
  document.body.dataset.loaded = "true";
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  saveKey($("#api-key").value.trim());
  $("#key-dialog").close();
  start();
});
$("#print-report").addEventListener("click", () => window.print());

if (apiKey()) start();
else askForKey();
