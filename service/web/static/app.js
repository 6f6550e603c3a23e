// The one-map page: imagery basemap, cases coloured by status, legal layers, cameras,
// jurisdictions, and a case panel. It talks to the public API with the key the user enters,
// exactly like any other client, so it can see and do no more than that key allows.
import { applyEarlyAlerts, startLiveFeed } from "./alerts.js";
import { addCaseLayers, addCaseSources, showCases } from "./cases.js";
import { $, apiJson, apiKey, askForKey, forgetKey, saveKey, setStatus, state } from "./common.js";
import {
  STALE_DAYS, addOverlaySources, buildMap, buildSidebar, loadLegalLayers, showOverlays,
  wireClicks,
} from "./map.js";
import { wireStatistics } from "./stats.js";

// --- start -----------------------------------------------------------------------------

async function start() {
  const started = performance.now(); // "first render" counts from here: the key is known
  try {
    state.me = await apiJson("/v1/map/me");
  } catch (error) {
    if (error.status !== 401) askForKey(error.message);
    return;
  }
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  $("#sign-out").hidden = false;
  wireStatistics();
  // Ask for the data while the map library sets itself up.
  startLiveFeed();
  // Points only: outlines are fetched for the view once zoomed in far enough to see them.
  const cases = apiJson("/v1/map/case-points.geojson");
  const overlays = Promise.all([
    apiJson("/v1/map/jurisdictions.geojson"),
    apiJson("/v1/map/cameras.geojson"),
    apiJson(`/v1/map/unobserved.geojson?days=${STALE_DAYS}`),
  ]);
  const map = buildMap(state.me.extent, state.me.imagery_extent);
  state.map = map;
  // The style is inline, so layers can be added once it is parsed, before any tile arrives.
  await new Promise((resolve) => {
    if (map.isStyleLoaded()) resolve();
    else map.once("style.load", resolve);
  });
  addOverlaySources(map);
  addCaseSources(map);
  addCaseLayers(map);
  buildSidebar();
  wireClicks(map);
  await Promise.all([
    cases.then((collection) => {
      showCases(collection, started);
      applyEarlyAlerts();
    }),
    overlays.then(showOverlays),
    loadLegalLayers(),
  ]).catch((error) => setStatus(`loading failed: ${error.message}`));
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  saveKey($("#api-key").value.trim());
  $("#key-dialog").close();
  if (state.map) location.reload(); // signed in again mid-session: start clean
  else start();
});
$("#close-panel").addEventListener("click", () => {
  $("#case-panel").hidden = true;
});
$("#sign-out").addEventListener("click", () => {
  forgetKey();
  location.reload();
});

if (apiKey()) start();
else askForKey();
