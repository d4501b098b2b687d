// Cerberus person search page: builds the description form from GET /api/schema and shows the
// results of the JSON API. Text from the server is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let photoFile = null;
let photoUrl = null;
let missingSaid = false;  // the notice of missing thumbnails is shown once

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function label(name) {
  return name.replace(/[._]/g, " ");
}

function topK() {
  const k = parseInt($("top-k").value, 10);
  return Number.isFinite(k) ? k : 12;
}

// ---- filters: cameras, a time window (sent as ISO-8601 with its offset), per track

function isoOf(value) {
  if (!value) return null;
  const full = value.length === 16 ? `${value}:00` : value;  // seconds are optional
  if ($("zone").value === "utc") return `${full}Z`;
  const minutes = -new Date(full).getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  return `${full}${sign}${pad(minutes / 60)}:${pad(minutes % 60)}`;
}

function filters() {
  const boxes = [...document.querySelectorAll("#camera-list input")];
  const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
  return {
    // every camera ticked: no camera condition (crops of an unknown camera stay)
    cameras: chosen.length === boxes.length ? null : chosen,
    after: isoOf($("after").value),
    before: isoOf($("before").value),
    per_track: $("per-track").checked,
  };
}

function addFilters(form) {
  const f = filters();
  for (const camera of f.cameras || []) form.append("cameras", camera);
  if (f.after) form.append("after", f.after);
  if (f.before) form.append("before", f.before);
  form.append("per_track", f.per_track ? "true" : "false");
  return form;
}

function filterQuery() {
  const f = filters();
  const params = new URLSearchParams();
  for (const camera of f.cameras || []) params.append("camera", camera);
  if (f.after) params.append("after", f.after);
  if (f.before) params.append("before", f.before);
  return params.toString();
}

function showCameras(cameras) {
  const list = $("camera-list");
  const have = new Set([...list.querySelectorAll("input")].map((b) => b.value));
  for (const camera of cameras) {
    if (have.has(camera)) continue;  // a camera that appeared while serving is added, ticked
    have.add(camera);
    // by position, never by name: "gate 1" and "gate-1" (or two non-ASCII names) stay apart
    const id = `camera-${list.querySelectorAll("input").length}`;
    const box = el("input", { type: "checkbox", id, value: camera });
    box.checked = true;
    list.append(el("label", { for: id }, [box, camera]));
  }
  $("camera-note").textContent = cameras.length
    ? "Untick the cameras to leave out."
    : "The gallery knows no camera names.";
}

async function refreshGallery() {
  try {
    const now = await api("/api/gallery");
    showCameras(now.cameras);
    $("gallery-info").dataset.size = String(now.size);
    const text = $("gallery-info").textContent.replace(/^\d+ gallery crops/, `${now.size} gallery crops`);
    $("gallery-info").textContent = text;
  } catch (_) { /* the next search says what is wrong */ }
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const reason = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

function buildAttributeForm(schema) {
  const holder = $("attr-groups");
  holder.replaceChildren();
  for (const group of schema.groups) {
    if (!group.attributes.length) continue;
    const set = el("fieldset", {}, [el("legend", { text: group.name })]);
    for (const attr of group.attributes) {
      const id = `attr-${attr.name.replace(/[^A-Za-z0-9_-]/g, "-")}`;
      const select = el("select", { id, name: attr.name, "data-attribute": attr.name });
      select.append(el("option", { value: "", text: "any" }));
      for (const value of attr.values) select.append(el("option", { value, text: value }));
      set.append(el("div", { class: "field" }, [el("label", { for: id, text: label(attr.name) }), select]));
    }
    holder.append(set);
  }
}

function showQuery(query, imageUrl) {
  const box = $("query");
  box.replaceChildren();
  if (imageUrl) box.append(el("img", { src: imageUrl, alt: "Query photo" }));
  const heading = query.kind === "attributes" ? "Described as" : "Predicted attributes of the query";
  const list = el("ul", { "aria-label": heading });
  for (const line of query.text) list.append(el("li", { text: line }));
  const parts = [el("strong", { text: heading }), list];
  if (query.groups) {
    // how sure each predicted group is: the probability of its SID among the group's SIDs
    const sure = el("ul", { class: "certainty", "aria-label": "How sure, per group" });
    for (const g of query.groups) {
      const text = `${g.name} ${Math.round(100 * g.certainty)}%${g.weak ? " (weak)" : ""}`;
      sure.append(el("li", { class: g.weak ? "weak" : "", text }));
    }
    parts.push(el("div", { class: "muted", text: "How sure, per group (weak: under 50%):" }), sure);
  }
  if (query.excluded !== undefined) {
    parts.push(el("p", {
      class: "muted excluded",
      text: `Gallery crop ${query.excluded} is the query: it is left out of its own results.`,
    }));
  }
  box.append(el("div", {}, parts));
  box.hidden = false;
}

// a crop's thumbnail, or a box saying it has none (its file is missing on the server)
function picture(src, alt) {
  if (src) return el("img", { src, alt, loading: "lazy" });
  return el("span", { class: "no-picture", role: "img", "aria-label": alt, text: "no picture" });
}

function missingNotice(data) {
  if (!data.thumbnails_missing || missingSaid) return "";
  missingSaid = true;
  return " Some crops' pictures are missing on the server: their cards show no picture.";
}

function resultCard(row) {
  const verdict = row.correct === true ? "correct" : row.correct === false ? "wrong" : "";
  const camera = row.camera === null ? "camera unknown" : `camera ${row.camera}`;
  const who = row.pid === null ? "" : `, person ${row.pid}`;
  const alt = `Rank ${row.rank}: gallery crop ${row.id}, ${camera}${who}`;
  const button = el("button", {
    type: "button", title: "Search with this crop", "aria-label": `${alt}. Search with this crop`,
  }, [picture(row.thumbnail, alt)]);
  button.addEventListener("click", () => searchGallery(row.id, row.thumbnail));
  const meta = el("div", { class: "meta" }, [
    el("span", { class: "rank", text: `#${row.rank}` }),
    el("span", { class: "score", text: `score ${row.score.toFixed(3)}` }),
  ]);
  const meta2 = el("div", { class: "meta" }, [el("span", { class: "camera", text: camera + who })]);
  const rows = [button, meta, meta2];
  if (row.count !== undefined) {
    // whole seconds, "Z" for UTC: a track's span fits the card
    const short = (t) => t.replace(/\.\d+/, "").replace(/\+00:00$/, "Z");
    const span = row.span ? `, ${short(row.span[0])} – ${short(row.span[1])}` : "";
    rows.push(el("div", { class: "when track", text: `track of ${row.count} crops${span}` }));
  } else if (row.time) {
    rows.push(el("div", { class: "when", text: row.time }));
  }
  // a link to the timeline below (the card's one button searches with the crop)
  const where = el("a", {
    href: "#timeline", class: "where", "aria-label": `Where else was the person of result ${row.rank}?`,
  }, ["Where else?"]);
  where.addEventListener("click", (e) => { e.preventDefault(); showTimeline(row.id); });
  rows.push(where);
  if (row.frame !== null && row.frame !== undefined) {
    // the frame opens below, its track's path drawn on it (the link alone: the bare JPEG)
    const frame = el("a", {
      href: `/api/gallery/${row.id}/frame`, target: "_blank", rel: "noopener", class: "frame",
      "aria-label": `Source frame of result ${row.rank}, with its box`,
    }, [`frame ${row.frame}`]);
    frame.addEventListener("click", (e) => { e.preventDefault(); showFrame(row); });
    rows.push(frame);
  }
  if (row.same_person === true || row.same_person === false) {
    const where = row.calibrated_on ? `calibrated on ${row.calibrated_on}` : "calibrated";
    rows.push(el("div", {
      class: `meta same ${row.same_person ? "yes" : "no"}`,
      text: `${row.same_person ? "same person" : "different"} (${where})`,
    }));
  }
  if (verdict) meta2.append(el("span", { class: `badge ${verdict}`, text: verdict === "correct" ? "✓ match" : "✗ other" }));
  const attrs = el("ul", { class: "attributes", "aria-label": "Predicted attributes" });
  for (const phrase of row.attributes) attrs.append(el("li", { text: phrase }));
  rows.push(attrs);
  return el("li", { class: `card ${verdict}`, "data-rank": String(row.rank) }, rows);
}

// the filters a search ran with, in words: "cameras c1, c2; from ... until ...; one per track"
function filterWords(f) {
  const parts = [];
  if (f.cameras) parts.push(`${f.cameras.length === 1 ? "camera" : "cameras"} ${f.cameras.join(", ")}`);
  if (f.after) parts.push(`from ${f.after}`);
  if (f.before) parts.push(`until ${f.before}`);
  if (f.per_track) parts.push("one per track");
  return parts.length ? ` (${parts.join("; ")})` : "";
}

function showResults(data, imageUrl, what, f) {
  showQuery(data.query, imageUrl);
  const list = $("result-list");
  list.replaceChildren(...data.results.map(resultCard));
  const point = data.operating_point;
  const said = point ? ` "Same person" above ${point.text}.` : "";
  setStatus(`${data.results.length} results for ${what}${filterWords(f)}.${said}${missingNotice(data)}`);
}

// the results of the last search, its timeline and frame, gone (a new search or a failed one)
function clearResults() {
  $("query").replaceChildren();
  $("query").hidden = true;
  $("result-list").replaceChildren();
  clearTimeline();
}

function clearTimeline() {
  $("timeline").hidden = true;
  $("timeline-lanes").replaceChildren();
  $("candidate-lanes").replaceChildren();
  $("timeline-candidates").hidden = true;
  $("timeline-axis").textContent = "";
  $("timeline-status").textContent = "";
  $("frame-view").hidden = true;
  $("frame-figure").replaceChildren();
}

// on a narrow window the results sit below the queries: bring them into view
function revealResults() {
  const box = $("results").getBoundingClientRect();
  if (box.top >= window.innerHeight || box.top < 0) $("results").scrollIntoView({ block: "start" });
}

function noCamera() {
  const f = filters();
  return f.cameras !== null && f.cameras.length === 0;
}

async function run(what, request, imageUrl) {
  if (noCamera()) { setStatus("Tick at least one camera.", true); return; }
  setStatus(`Searching ${what}…`);
  const f = filters();
  clearTimeline();
  try {
    const data = await request();
    showResults(data, imageUrl, what, f);
  } catch (error) {
    clearResults();
    setStatus(`Search failed: ${error.message}`, true);
  }
  revealResults();
  refreshGallery();
}

// ---- "where else was this person?": one lane per camera, each sighting at its time

function timelineMark(s, left, candidate = false) {
  const when = s.start ? (s.start === s.end ? s.start : `${s.start} – ${s.end}`) : "time unknown";
  const what = candidate ? "Candidate, not a sighting: gallery crop" : "Gallery crop";
  const alt = `${what} ${s.item}, camera ${s.camera || "unknown"}, ${when}, score ${s.score.toFixed(3)}`;
  const button = el("button", { type: "button", title: alt, "aria-label": `${alt}. Search with this crop` },
    [picture(s.thumbnail, alt)]);
  button.addEventListener("click", () => searchGallery(s.item, s.thumbnail));
  const label = s.start ? s.start.slice(11, 19) : "?";
  const kind = s.query ? " query" : candidate ? " candidate" : "";
  const mark = el("li", { class: `mark${kind}`, "data-item": String(s.item) },
    [button, el("span", { text: `${label} · ${s.count}` })]);
  if (left !== null) mark.style.left = `${left}%`;  // CSSOM, allowed by the page's style policy
  return mark;
}

// Marks closer than their width go on rows below one another: each mark (in time order) takes
// the first row whose last mark ends (plus a gap) left of where it starts; the lane grows.
function spreadMarks(list) {
  const width = list.clientWidth;
  const gap = 4;
  const ends = [];  // per row: the right edge of its last mark, in pixels
  let rowHeight = 0;
  const placed = [];
  for (const mark of list.children) {
    const w = mark.offsetWidth;
    rowHeight = Math.max(rowHeight, mark.offsetHeight + gap);
    const centre = (parseFloat(mark.style.left) / 100) * width;
    let row = ends.findIndex((end) => end + gap <= centre - w / 2);
    if (row < 0) { row = ends.length; ends.push(0); }
    ends[row] = centre + w / 2;
    placed.push([mark, row]);
  }
  for (const [mark, row] of placed) mark.style.top = `${gap + row * rowHeight}px`;
  if (ends.length > 1) list.style.height = `${ends.length * rowHeight + gap}px`;
}

// one lane per camera of `seen` into `box`, each sighting at its time on the axis lo..hi
function drawLanes(box, seen, at, candidate) {
  const cameras = [...new Set(seen.map((s) => s.camera || "unknown"))].sort();
  for (const camera of cameras) {
    const here = seen.filter((s) => (s.camera || "unknown") === camera);
    const timed = here.filter((s) => s.start).sort((a, b) => at(a) - at(b));
    const untimed = here.filter((s) => !s.start);
    const what = candidate ? `Candidates, camera ${camera}` : `Camera ${camera}`;
    const marks = el("ol", { class: "lane-marks", "aria-label": what },
      timed.map((s) => timelineMark(s, at(s), candidate)));
    const lane = [el("span", { class: "lane-name", text: camera }), marks];
    if (untimed.length) {
      // sightings without a time: side by side after the lane, never on one spot
      lane.push(el("ol", { class: "lane-untimed", "aria-label": `${what}, time unknown` },
        untimed.map((s) => timelineMark(s, null, candidate))));
    }
    box.append(el("div", { class: "lane" }, lane));
    spreadMarks(marks);
  }
}

function showTimeline(id) {
  const box = $("timeline");
  box.hidden = false;
  if (noCamera()) { $("timeline-status").textContent = "Tick at least one camera."; return; }
  $("timeline-status").textContent = `Looking for gallery crop ${id}'s person…`;
  $("timeline-lanes").replaceChildren();
  $("candidate-lanes").replaceChildren();
  $("timeline-candidates").hidden = true;
  const query = filterQuery();
  api(`/api/timeline/${id}${query ? `?${query}` : ""}`).then((data) => {
    const seen = data.sightings;
    const maybe = data.candidates || [];
    const times = seen.concat(maybe).filter((s) => s.start)
      .flatMap((s) => [Date.parse(s.start), Date.parse(s.end)]);
    const lo = Math.min(...times), hi = Math.max(...times);
    const at = (s) => (!s.start || hi === lo ? 50 : (100 * (Date.parse(s.start) - lo)) / (hi - lo));
    drawLanes($("timeline-lanes"), seen, at, false);
    if (maybe.length) {
      // no calibrated threshold: the rest of the top crops, apart and marked, never as sightings
      $("timeline-candidates").hidden = false;
      $("candidates-note").textContent = `The model has no calibrated threshold, so these ` +
        `${maybe.length} groups of crops scoring at or below the default ${data.threshold} are ` +
        "only candidates: they may be other people. Check them by eye; `cerberus calibrate` " +
        "gives the model a threshold.";
      drawLanes($("candidate-lanes"), maybe, at, true);
    }
    $("timeline-axis").textContent = times.length
      ? `${new Date(lo).toISOString()} → ${new Date(hi).toISOString()}`
      : "No sighting has a time.";
    const more = maybe.length ? ` ${maybe.length} candidates below, apart.` : "";
    $("timeline-status").textContent =
      `${seen.length} sightings of gallery crop ${id}'s person (${data.rule}).${more}${missingNotice(data)}`;
    box.focus();
  }).catch((error) => {
    $("timeline-status").textContent = `Timeline failed: ${error.message}`;
  });
}

// ---- the source frame of a result, its track's path drawn on it

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// The path as polylines of the boxes' foot points (bottom centre): one per run of segments of
// one kind, a segment being of the kind of the box it ends at (solid: a detection matched the
// track; dashed: the tracker predicted the box across a gap). Then the track's box on this
// frame (from its path, else the crop's box) and its foot point.
function pathDrawing(track, frame, cropBox, width, height) {
  const drawing = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "path-overlay", role: "img",
    "aria-label": track ? `Path of track ${track.track}: ${track.path.length} boxes` : "Box of the crop",
  });
  const path = track ? track.path : [];
  const foot = (p) => `${((p[1] + p[3]) / 2).toFixed(1)},${p[4].toFixed(1)}`;
  let run = path.length ? [foot(path[0])] : [];
  let kind = null;
  const flush = () => {
    if (run.length > 1) {
      drawing.append(svg("polyline", {
        points: run.join(" "), class: `track-path ${kind ? "detected" : "predicted"}`,
      }));
    }
  };
  for (let i = 1; i < path.length; i++) {
    const detected = track.path_detected[i];
    if (kind !== null && detected !== kind) { flush(); run = [run[run.length - 1]]; }
    kind = detected;
    run.push(foot(path[i]));
  }
  flush();
  const here = path.find((p) => p[0] === frame);
  const box = here ? here.slice(1) : cropBox;
  if (box) {
    drawing.append(svg("rect", {
      x: box[0], y: box[1], width: box[2] - box[0], height: box[3] - box[1], class: "track-box",
    }));
    drawing.append(svg("circle", { cx: (box[0] + box[2]) / 2, cy: box[3], r: 4, class: "track-foot" }));
  }
  drawing.dataset.points = String(path.length);
  return drawing;
}

async function showFrame(row) {
  const view = $("frame-view");
  const status = $("frame-status");
  const figure = $("frame-figure");
  view.hidden = false;
  figure.replaceChildren();
  status.textContent = `Loading frame ${row.frame} of gallery crop ${row.id}…`;
  const image = el("img", {
    src: `/api/gallery/${row.id}/frame`, alt: `Frame ${row.frame} of ${row.camera || "an unknown camera"}, the crop's box drawn`,
  });
  const asked = api(`/api/gallery/${row.id}/track`).then((found) => ({ found }), (error) => ({ error }));
  try {
    await image.decode();
  } catch (_) {
    status.textContent = `Frame ${row.frame} of gallery crop ${row.id} could not be shown (is its video still there?).`;
    return;
  }
  let track = null;
  let box = null;
  let said = "The crop has no track.";
  const { found, error } = await asked;
  if (error) {
    said = `No path: ${error.message}`;
  } else {
    track = found.track;
    box = found.box;
    if (track) {
      const predicted = track.boxes - track.detected;
      said = track.boxes
        ? `Track ${track.track}: ${track.boxes} boxes over frames ${track.first_frame}–${track.last_frame} (${predicted} predicted, dashed).`
        : `Track ${track.track} has no stored path.`;
    }
  }
  figure.replaceChildren(image, pathDrawing(track, row.frame, box, image.naturalWidth, image.naturalHeight));
  status.textContent = `Frame ${row.frame} of gallery crop ${row.id}. ${said}`;
  view.focus();
}

function searchPhoto() {
  if (!photoFile) { setStatus("Choose a photo first.", true); $("photo-input").focus(); return; }
  const form = addFilters(new FormData());
  form.append("image", photoFile);
  form.append("k", String(topK()));
  run("the photo", () => api("/api/search/image", { method: "POST", body: form }), photoUrl);
}

function searchGallery(id, thumbnail) {
  const form = addFilters(new FormData());
  form.append("gallery_id", String(id));
  form.append("k", String(topK()));
  run(`gallery crop ${id}`, () => api("/api/search/image", { method: "POST", body: form }), thumbnail)
    .then(() => $("results").focus());
}

function searchAttributes() {
  const attributes = {};
  for (const select of document.querySelectorAll("#attr-groups select")) {
    if (select.value) attributes[select.dataset.attribute] = select.value;
  }
  if (!Object.keys(attributes).length) {
    setStatus("Set at least one attribute (the others stay “any”).", true);
    return;
  }
  const body = JSON.stringify({ attributes, k: topK(), ...filters() });
  run("the description", () => api("/api/search/attributes", {
    method: "POST", headers: { "Content-Type": "application/json" }, body,
  }), null);
}

function choosePhoto(file) {
  if (!file) return;
  photoFile = file;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const preview = $("photo-preview");
  preview.src = photoUrl;
  preview.alt = `Chosen photo: ${file.name}`;
  preview.hidden = false;
  searchPhoto();
}

function wire() {
  $("photo-input").addEventListener("change", (e) => choosePhoto(e.target.files[0]));
  $("photo-form").addEventListener("submit", (e) => { e.preventDefault(); searchPhoto(); });
  $("attr-form").addEventListener("submit", (e) => { e.preventDefault(); searchAttributes(); });
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    choosePhoto(e.dataTransfer.files[0]);
  });
}

async function start() {
  wire();
  try {
    const [health, schema, now] = await Promise.all(
      [api("/api/health"), api("/api/schema"), api("/api/gallery")]);
    buildAttributeForm(schema);
    showCameras(now.cameras);
    $("gallery-info").textContent =
      `${health.gallery_size} gallery crops · ${schema.name} attributes · model ${health.checkpoint}`;
    document.body.dataset.ready = "true";
  } catch (error) {
    $("gallery-info").textContent = `The server did not answer: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", start);
