// The statistics view: charts of the caller's cases from GET /v1/cases/statistics, drawn with
// the vendored Chart.js, which is loaded only when the view is first opened.
import { STATUS_COLOURS } from "./cases.js";
import { $, apiJson, element, setStatus, state } from "./common.js";

const CHART_LIBRARY = "/static/vendor/chart.js/chart.umd.min.js";
const BAR_COLOUR = "#1e88e5";
const P90_COLOUR = "#90caf9";
const SHARE_COLOURS = {
  confirmed: STATUS_COLOURS.confirmed, dismissed: STATUS_COLOURS.dismissed,
  rectified: STATUS_COLOURS.rectified, reopened: STATUS_COLOURS.new,
};

let library = null;

function loadChartLibrary() {
  library ??= new Promise((resolve, reject) => {
    const script = element("script", { src: CHART_LIBRARY });
    script.addEventListener("load", () => resolve(window.Chart));
    script.addEventListener("error", () => reject(new Error("the chart library did not load")));
    document.head.append(script);
  });
  return library;
}

const words = (key) => key.replaceAll("_", " ");

// One chart in its own figure; the canvas's label reads out the numbers for screen readers.
function chartFigure(name, title, labels, datasets, options = {}) {
  const summary = datasets.map((d) =>
    `${d.label}: ${labels.map((l, i) => `${l} ${d.data[i]}`).join(", ")}`).join("; ");
  const canvas = element("canvas", { id: `chart-${name}`, role: "img", "aria-label": `${title}. ${summary}` });
  $("#stats-charts").append(element("figure", { className: "chart" }, element("figcaption", {}, title),
    element("div", { className: "chart-box" }, canvas)));
  state.charts[name] = new window.Chart(canvas, {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false, // drawn once, at once: no frames spent on a flourish
      maintainAspectRatio: false,
      plugins: { legend: { display: datasets.length > 1 } },
      ...options,
    },
  });
}

// Counts are whole numbers: no 0.5 ticks on the value axis.
function countChart(name, title, counts, { colours = {}, order = null, horizontal = false } = {}) {
  const labels = Object.keys(counts);
  if (order) labels.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const backgroundColor = labels.map((l) => colours[l] || BAR_COLOUR);
  const valueAxis = { beginAtZero: true, ticks: { precision: 0 } };
  chartFigure(name, title, labels.map(words),
    [{ label: "cases", data: labels.map((l) => counts[l]), backgroundColor }],
    horizontal ? { indexAxis: "y", scales: { x: valueAxis } } : { scales: { y: valueAxis } });
}

function drawCharts(stats) {
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {};
  $("#stats-charts").replaceChildren();
  countChart("status", "Cases by status", stats.by_status,
    { colours: STATUS_COLOURS, order: Object.keys(STATUS_COLOURS) });
  countChart("type", "Cases by change type", stats.by_type);
  countChart("jurisdiction", "Cases by jurisdiction", stats.by_jurisdiction, { horizontal: true });
  countChart("month", "Cases by month first seen", stats.by_month);
  const states = Object.keys(stats.time_in_state);
  chartFigure("time", "Time in each state (hours, completed stays)", states.map(words), [
    { label: "median", data: states.map((s) => stats.time_in_state[s].median_hours), backgroundColor: BAR_COLOUR },
    { label: "90th percentile", data: states.map((s) => stats.time_in_state[s].p90_hours), backgroundColor: P90_COLOUR },
  ]);
  const outcomes = Object.keys(stats.shares);
  chartFigure("shares", "Share of cases ever confirmed, dismissed, rectified, reopened (%)", outcomes, [{
    label: "% of cases",
    data: outcomes.map((o) => Math.round(stats.shares[o] * 1000) / 10),
    backgroundColor: outcomes.map((o) => SHARE_COLOURS[o] || BAR_COLOUR),
  }], { scales: { y: { min: 0, max: 100 } } });
}

async function showStatistics() {
  const view = $("#stats-view");
  view.dataset.loaded = "false";
  try {
    const [stats] = await Promise.all([apiJson("/v1/cases/statistics"), loadChartLibrary()]);
    $("#stats-summary").textContent = stats.total
      ? `${stats.total} cases in your jurisdictions.`
      : "No cases in your jurisdictions yet.";
    drawCharts(stats);
    view.dataset.loaded = "true";
  } catch (error) {
    setStatus(`statistics: ${error.message}`);
  }
}

// A case changed while the statistics are shown: fetch them again, once for a burst.
let refreshTimer = null;

export function refreshStatisticsIfShown() {
  if ($("#stats-view").hidden) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(showStatistics, 1000);
}

// The top-bar button swaps between the map and the statistics (fetched anew each time).
export function wireStatistics() {
  state.charts = {};
  const button = $("#show-stats");
  button.hidden = false;
  button.addEventListener("click", () => {
    const view = $("#stats-view");
    view.hidden = !view.hidden;
    button.setAttribute("aria-pressed", String(!view.hidden));
    button.textContent = view.hidden ? "Statistics" : "Back to the map";
    if (!view.hidden) showStatistics();
  });
}
