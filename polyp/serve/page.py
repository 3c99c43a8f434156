"""The single web page: plain HTML, CSS and a little JavaScript, no build step.

It reads `/api/info`, shows the examples as buttons, posts an example id or an uploaded file to
`/predict`, and shows the image, the overlay with the mask's outline, the mask, the polyp area, the
inference time and, when ticked, the Grad-CAM map. `/?example=<id>` runs that example on load.
Server text is always inserted with `textContent`, never as HTML.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Polyp segmentation</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1320px; padding: 0 1rem; color: #222; }
  h1 { margin-bottom: 0.2rem; }
  h2 { font-size: 1rem; margin: 0 0 0.4rem; }
  .muted { color: #666; }
  .controls { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; margin: 1rem 0; }
  #examples { display: flex; flex-wrap: wrap; gap: 0.4rem; max-width: 640px; }
  #examples button { padding: 2px; border: 2px solid #ccc; border-radius: 6px; background: #fff; cursor: pointer; }
  #examples button.chosen, #examples button:hover { border-color: #1a7f37; }
  #examples img { width: 64px; height: 64px; object-fit: cover; display: block; border-radius: 3px; }
  .error { background: #ffebe9; border: 1px solid #cf222e; color: #82071e; padding: 0.6rem 0.8rem; border-radius: 6px; }
  .numbers { display: flex; gap: 2.5rem; margin: 0.8rem 0; }
  .numbers div { display: flex; flex-direction: column; }
  .numbers span:first-child { color: #666; font-size: 0.85rem; }
  .numbers span:last-child { font-size: 1.5rem; font-weight: 600; }
  .panels { display: flex; flex-wrap: wrap; gap: 1rem; }
  figure { margin: 0; }
  figure img { width: 300px; height: 300px; object-fit: contain; background: #111; border-radius: 6px;
               image-rendering: pixelated; display: block; }
  figcaption { text-align: center; font-size: 0.9rem; color: #444; margin-top: 0.3rem; }
</style>
</head>
<body>
<h1>Polyp segmentation</h1>
<p class="muted" id="model">Loading the model's details&hellip;</p>
<div class="controls">
  <div>
    <h2>Choose an example</h2>
    <div id="examples"><span class="muted">none</span></div>
  </div>
  <div>
    <h2>or upload a colonoscopy image</h2>
    <input type="file" id="file" accept="image/jpeg,image/png">
    <p class="muted" id="limit">JPEG or PNG</p>
    <label><input type="checkbox" id="gradcam"> also show the Grad-CAM map</label>
  </div>
</div>
<p id="status" role="status" class="muted"></p>
<p id="error" class="error" role="alert" hidden></p>
<section id="result" hidden>
  <h2 id="result-title"></h2>
  <div class="numbers">
    <div><span>Polyp area</span><span id="area"></span></div>
    <div><span>Inference time</span><span id="time"></span></div>
    <div><span>Image size</span><span id="size"></span></div>
  </div>
  <div class="panels">
    <figure><img id="image-view" alt="the image"><figcaption>Image</figcaption></figure>
    <figure><img id="overlay-view" alt="the image with the predicted mask"><figcaption>Predicted mask: overlay and outline</figcaption></figure>
    <figure><img id="mask-view" alt="the predicted mask"><figcaption>Mask</figcaption></figure>
    <figure id="gradcam-figure" hidden><img id="gradcam-view" alt="Grad-CAM map"><figcaption>Grad-CAM</figcaption></figure>
  </div>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let maxUploadBytes = 10 * 1024 * 1024;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

function detailText(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return "the server answered HTTP " + status;
}

function showResult(answer, imageUrl, title) {
  $("result-title").textContent = title;
  $("area").textContent = (100 * answer.area_fraction).toFixed(1) + " %";
  $("time").textContent = answer.inference_ms.toFixed(0) + " ms";
  $("size").textContent = answer.width + " \\u00d7 " + answer.height;
  $("image-view").src = imageUrl;
  $("overlay-view").src = "data:image/png;base64," + answer.overlay_png_base64;
  $("mask-view").src = "data:image/png;base64," + answer.mask_png_base64;
  const cam = answer.gradcam_png_base64;
  $("gradcam-figure").hidden = !cam;
  if (cam) $("gradcam-view").src = "data:image/png;base64," + cam;
  $("result").hidden = false;
  $("status").textContent = "";
}

async function predict(url, options, imageUrl, title) {
  $("error").hidden = true;
  $("status").textContent = "predicting " + title + "\\u2026";
  const separator = url.includes("?") ? "&" : "?";
  try {
    const response = await fetch(url + separator + "gradcam=" + $("gradcam").checked, options);
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(detailText(body, response.status));
    showResult(body, imageUrl, title);
  } catch (error) {
    showError("Could not predict " + title + ": " + error.message);
  }
}

function predictExample(example, button) {
  document.querySelectorAll("#examples button").forEach((b) => b.classList.remove("chosen"));
  if (button) button.classList.add("chosen");
  return predict("predict?example=" + example.id, { method: "POST" }, "examples/" + example.id, example.name);
}

function predictFile(file) {
  if (!["image/jpeg", "image/png"].includes(file.type)) {
    return showError(file.name + " is not a JPEG or PNG image");
  }
  if (file.size > maxUploadBytes) {
    return showError(file.name + " is " + (file.size / 1048576).toFixed(1) + " MB; the limit is " +
                     (maxUploadBytes / 1048576).toFixed(1) + " MB");
  }
  const form = new FormData();
  form.append("file", file);
  return predict("predict", { method: "POST", body: form }, URL.createObjectURL(file), file.name);
}

async function start() {
  let info;
  try {
    const response = await fetch("api/info");
    info = await response.json();
  } catch (error) {
    return showError("Could not reach the server: " + error.message);
  }
  const model = info.model;
  $("model").textContent = "Model: " + model.arch + " with " + model.encoder + " encoder, input " +
                           model.image_size + " \\u00d7 " + model.image_size + " pixels";
  maxUploadBytes = info.max_upload_bytes;
  $("limit").textContent = "JPEG or PNG, at most " + (maxUploadBytes / 1048576).toFixed(1) + " MB";
  const list = $("examples");
  if (info.examples.length) list.textContent = "";
  const buttons = new Map();
  for (const example of info.examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = example.name;
    button.dataset.example = example.id;
    const thumbnail = document.createElement("img");
    thumbnail.src = "examples/" + example.id;
    thumbnail.alt = example.name;
    button.append(thumbnail);
    button.addEventListener("click", () => predictExample(example, button));
    list.append(button);
    buttons.set(String(example.id), [example, button]);
  }
  $("file").addEventListener("change", (event) => {
    if (event.target.files.length) predictFile(event.target.files[0]);
  });
  const params = new URLSearchParams(location.search);
  if (params.get("gradcam") === "1") $("gradcam").checked = true;
  const wanted = params.get("example");
  if (wanted !== null) {
    if (buttons.has(wanted)) predictExample(...buttons.get(wanted));
    else showError("There is no example " + wanted);
  }
}

start();
</script>
</body>
</html>
"""
