// The map: imagery basemap, case layers coloured by status, overlays and the layer sidebar.
import {
  POLYGON_MIN_ZOOM, STATUS_COLOURS, caseLayerIds, centreOf, loadOutlinesInView,
} from "./cases.js";
import { $, apiJson, apiKey, element, setStatus, state } from "./common.js";
import { openCase } from "./panel.js";

export const STALE_DAYS = 30; // imagery older than this is shaded as "not observed since"
const LAYER_COLOURS = {
  cultivated_land: "#9ccc65",
  permanent_basic_farmland: "#2e7d32",
  urban_development_boundary: "#ef6c00",
  ecological_red_line: "#c62828",
  purple_line: "#6a1b9a",
  yellow_line: "#f9a825",
  blue_line: "#1565c0",
  green_line: "#43a047",
  orange_line: "#ff7043",
  geohazard_line: "#5d4037",
  approved_construction: "#00acc1",
  facility_agriculture: "#7cb342",
};
const HEALTH_COLOURS = { ok: "#43a047", unknown: "#9e9e9e" }; // anything else: a problem

// --- the map -------------------------------------------------------------------------

export function buildMap(extent, imageryExtent) {
  const map = new maplibregl.Map({
    container: "map",
    style: {
      version: 8,
      sources: {
        imagery: {
          type: "raster",
          tiles: [`${location.origin}/v1/tiles/{z}/{x}/{y}.png`],
          tileSize: 256,
          maxzoom: 19,
          // No requests where there is no imagery (scenes ingested later show after a reload).
          ...(imageryExtent ? { bounds: imageryExtent } : {}),
          attribution: "Imagery: ingested scenes",
        },
      },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#dfe4e8" } },
        // No fade-in: each fading tile costs a redraw of the whole map per frame.
        { id: "imagery", type: "raster", source: "imagery", paint: { "raster-fade-duration": 0 } },
      ],
    },
    bounds: extent || [119.9, 30.0, 120.5, 30.5],
    fitBoundsOptions: { padding: 30 },
    maxZoom: 20,
    attributionControl: { compact: true },
    // Tiles are behind the API key too; MapLibre fetches them with this header.
    transformRequest: (url) =>
      url.startsWith(`${location.origin}/v1/`)
        ? { url, headers: { Authorization: `Bearer ${apiKey()}` } }
        : { url },
  });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  return map;
}

export function addOverlaySources(map) {
  const empty = { type: "FeatureCollection", features: [] };
  map.addSource("unobserved", { type: "geojson", data: empty });
  map.addSource("jurisdictions", { type: "geojson", data: empty });
  map.addSource("cameras", { type: "geojson", data: empty });

  map.addLayer({
    id: "stale-imagery", type: "fill", source: "unobserved",
    paint: { "fill-color": "#37474f", "fill-opacity": 0.35 },
  });
  map.addLayer({
    id: "jurisdictions", type: "line", source: "jurisdictions",
    paint: { "line-color": "#ffffff", "line-width": 1.5, "line-dasharray": [3, 2] },
  });
  map.addLayer({
    id: "viewsheds", type: "fill", source: "cameras", filter: ["==", ["get", "part"], "viewshed"],
    paint: { "fill-color": "#4fc3f7", "fill-opacity": 0.15, "fill-outline-color": "#0288d1" },
  });
  map.addLayer({
    id: "towers", type: "circle", source: "cameras", filter: ["==", ["get", "part"], "tower"],
    paint: {
      "circle-radius": 6,
      "circle-color": ["match", ["get", "health"], "ok", HEALTH_COLOURS.ok,
        "unknown", HEALTH_COLOURS.unknown, "#e53935"],
      "circle-stroke-color": "#ffffff", "circle-stroke-width": 2,
    },
  });
}

// --- loading data ----------------------------------------------------------------------

export function showOverlays([jurisdictions, cameras, unobserved]) {
  state.map.getSource("jurisdictions").setData(jurisdictions);
  state.map.getSource("cameras").setData(cameras);
  state.map.getSource("unobserved").setData(unobserved);
}

export async function loadLegalLayers() {
  const layers = await apiJson("/v1/map/layers");
  for (const layer of layers) {
    const id = `layer-${layer.kind}`;
    state.map.addSource(id, { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    const colour = LAYER_COLOURS[layer.kind] || "#ffffff";
    state.map.addLayer({
      id, type: "line", source: id, layout: { visibility: "none" },
      paint: { "line-color": colour, "line-width": 1.5 },
    }, "case-clusters");
    state.map.addLayer({
      id: `${id}-fill`, type: "fill", source: id, layout: { visibility: "none" },
      paint: { "fill-color": colour, "fill-opacity": 0.12 },
    }, id);
    addToggle(`${layer.kind.replaceAll("_", " ")} (${layer.version})`, [id, `${id}-fill`], false,
      async () => {
        const data = await apiJson(`/v1/map/layers/${layer.kind}.geojson`);
        state.map.getSource(id).setData(data);
        if (data.truncated) setStatus(`${layer.kind}: only the first ${data.numberReturned} shown`);
      }, colour);
  }
}

// --- sidebar ---------------------------------------------------------------------------

function addToggle(label, layerIds, visible, onFirstShow, colour) {
  let loaded = !onFirstShow;
  const checkbox = element("input", { type: "checkbox", "data-layers": layerIds.join(" ") });
  checkbox.checked = visible;
  checkbox.addEventListener("change", async () => {
    if (checkbox.checked && !loaded) {
      loaded = true;
      try {
        await onFirstShow();
      } catch (error) {
        setStatus(`could not load ${label}: ${error.message}`);
      }
    }
    for (const id of layerIds) {
      state.map.setLayoutProperty(id, "visibility", checkbox.checked ? "visible" : "none");
    }
  });
  const swatch = colour ? element("span", { className: "swatch", style: `background:${colour}` }) : null;
  $("#layer-toggles").append(element("li", {}, element("label", {}, checkbox, swatch, label)));
}

export function buildSidebar() {
  addToggle("Imagery basemap", ["imagery"], true);
  addToggle("Cases", caseLayerIds(), true);
  addToggle("Jurisdictions", ["jurisdictions"], true);
  addToggle("Cameras and viewsheds", ["towers", "viewsheds"], true);
  addToggle(`Not observed for ${STALE_DAYS} days`, ["stale-imagery"], true);
  for (const [status, colour] of Object.entries(STATUS_COLOURS)) {
    $("#legend").append(element("li", {},
      element("span", { className: "swatch", style: `background:${colour}` }), status));
  }
}

// --- interaction -----------------------------------------------------------------------

export function wireClicks(map) {
  for (const layer of ["case-fill", "case-points"]) {
    map.on("click", layer, (event) => openCase(event.features[0].properties.id));
    map.on("mouseenter", layer, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", layer, () => { map.getCanvas().style.cursor = ""; });
  }
  map.on("click", "case-clusters", async (event) => {
    const cluster = event.features[0];
    const zoom = await map.getSource("case-points").getClusterExpansionZoom(cluster.id);
    map.easeTo({ center: cluster.geometry.coordinates, zoom });
  });
  map.on("moveend", loadOutlinesInView);
  map.on("click", "towers", (event) => {
    const p = event.features[0].properties;
    new maplibregl.Popup()
      .setLngLat(event.lngLat)
      .setDOMContent(element("div", {}, element("strong", {}, p.name || p.code),
        element("div", {}, `health: ${p.health}`),
        element("div", {}, `last seen: ${p.last_seen_at || "never"}`)))
      .addTo(map);
  });
}

// Project a case's centre to page pixels (used by the browser tests to click it).
state.pixelOfCase = (id) => {
  const point = state.map.project(centreOf(id));
  const box = state.map.getCanvas().getBoundingClientRect();
  return { x: box.left + point.x, y: box.top + point.y };
};

// Centre the map on a case at a zoom where its outline shows; resolves once drawn.
state.focusCase = async (id, zoom = POLYGON_MIN_ZOOM + 1) => {
  state.map.jumpTo({ center: centreOf(id), zoom }); // its moveend asks for the outlines
  await loadOutlinesInView();
  await new Promise((resolve) => {
    state.map.once("idle", resolve);
    state.map.triggerRepaint();
  });
};

// Cases drawn one by one (as outline or point), by id.
state.renderedCaseIds = () => {
  const ids = new Set();
  for (const f of state.map.queryRenderedFeatures({ layers: ["case-fill", "case-points"] })) {
    ids.add(f.properties.id);
  }
  return [...ids].sort((a, b) => a - b);
};

// Every case drawn, counting those inside the clusters on screen.
state.renderedCaseCount = () => {
  const clusters = new Map();
  for (const f of state.map.queryRenderedFeatures({ layers: ["case-clusters"] })) {
    clusters.set(f.properties.cluster_id, f.properties.point_count);
  }
  let total = state.renderedCaseIds().length;
  for (const count of clusters.values()) total += count;
  return total;
};

// Cases drawn with the live highlight (changed by someone else and not opened since), by id.
state.renderedLiveCaseIds = () => {
  const layers = ["case-points", "case-outline"];
  const ids = new Set();
  for (const f of state.map.queryRenderedFeatures({ layers })) {
    if (f.properties.live) ids.add(f.properties.id);
  }
  return [...ids].sort((a, b) => a - b);
};
