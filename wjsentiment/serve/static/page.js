// The page of `wjsentiment serve`: send an image to POST /predict (and POST /explain for the
// heat map), show the label, the probabilities in ordinal order and the heat map.
// No library and nothing from another site: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function headers() {
  const key = $("key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function post(path, file) {
  const body = new FormData();
  body.append("file", file, file.name || "image");
  const response = await fetch(path, { method: "POST", body, headers: headers() });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof answer.detail === "string" ? answer.detail : response.statusText;
    if (response.status === 401) $("key-box").hidden = false;
    throw new Error(`${response.status}: ${detail}`);
  }
  return answer;
}

function showBars(prediction) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const name of info.classes) {  // ordinal order, as /info gives it
    const p = prediction.probabilities[name];
    const row = document.createElement("div");
    row.className = "bar" + (name === prediction.label ? " chosen" : "");
    row.dataset.class = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)} %`;
    row.append(label, track, value);
    bars.append(row);
  }
}

async function classify(file) {
  if (!file) return;
  $("result").hidden = false;
  $("picture").src = URL.createObjectURL(file);
  $("label").textContent = "";
  $("bars").replaceChildren();
  $("heatmap").removeAttribute("src");
  say("Classifying...");
  try {
    const answer = await post("predict", file);
    const prediction = answer.predictions[0];
    $("label").textContent = prediction.label;
    $("rule").textContent = `(decision rule: ${answer.decision_rule})`;
    showBars(prediction);
    say("");
    if (info.heatmaps) {
      say("Drawing the heat map...");
      const explained = (await post("explain", file)).explanations[0];
      $("heatmap").src = explained.overlay;
      $("heatmap-caption").textContent =
        `Grad-CAM heat map for "${explained.explained}", on the image as the model sees it`;
      say("");
    }
  } catch (error) {
    say(error.message, true);
  }
}

async function start() {
  try {
    const response = await fetch("info");
    info = (await response.json()).model;
  } catch (error) {
    say(`Cannot read the model's description: ${error.message}`, true);
    return;
  }
  $("model").textContent = `Model ${info.name}: ${info.classes.join(", ")}; ` +
    `labels by the "${info.decision_rule}" decision rule.`;
  $("key-box").hidden = !info.api_key_required;
  $("heatmap-box").hidden = !info.heatmaps;
  if (!info.heatmaps) {
    const note = document.createElement("p");
    note.id = "no-heatmaps";
    note.textContent = `No heat maps: ${info.no_heatmaps_because}.`;
    $("result").append(note);
  }
  const drop = $("drop");
  $("file").addEventListener("change", () => classify($("file").files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classify(event.dataTransfer.files[0]);
  });
}

start();
