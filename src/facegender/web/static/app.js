// Sends the chosen photo to /api/gender and draws each face found. Every text shown comes from
// textContent or the canvas, never from HTML built out of data.
"use strict";

const ERROR_WORDS = {
  no_face: "No face was found in this photo.",
  bad_image: "This file is not an image that can be read.",
  unsupported_format: "This image format is not supported; try JPEG, PNG or WebP.",
  image_too_large: "This photo is too large.",
  missing_image: "No photo was sent.",
  model_unavailable: "The service is still starting; try again in a moment.",
  inference_failed: "The photo could not be processed; try again later.",
};
const COLOURS = { female: "#d6336c", male: "#1c7ed6" };

const input = document.getElementById("photo");
const drop = document.getElementById("drop");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const canvas = document.getElementById("canvas");
const facesList = document.getElementById("faces");
let latestRequest = 0;

function percent(probability) {
  return `${(probability * 100).toFixed(1)}%`;
}

function faceLabel(face) {
  return `${face.class} ${percent(face.probability)}`;
}

function reset() {
  statusLine.textContent = "";
  errorLine.textContent = "";
  errorLine.hidden = true;
  facesList.replaceChildren();
}

function showError(error) {
  const code = String(error?.code);
  const words = Object.hasOwn(ERROR_WORDS, code) ? ERROR_WORDS[code] : null;
  errorLine.textContent = words ?? `The photo could not be used: ${error?.message ?? "unexpected answer"}.`;
  errorLine.hidden = false;
}

// The photo as the browser decodes it (upright, like the server), or null if it cannot.
function loadPicture(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const picture = new Image();
    picture.onload = () => {
      URL.revokeObjectURL(url);
      resolve(picture);
    };
    picture.onerror = () => {
      URL.revokeObjectURL(url);
      resolve(null);
    };
    picture.src = url;
  });
}

function drawFaces(picture, size, faces) {
  if (picture === null) {
    canvas.hidden = true;
    return;
  }
  canvas.width = picture.naturalWidth;
  canvas.height = picture.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0);
  canvas.hidden = false;
  if (size === null) {
    return;
  }
  const scaleX = canvas.width / size.width;
  const scaleY = canvas.height / size.height;
  const stroke = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 250));
  const fontSize = Math.max(14, stroke * 8);
  context.font = `bold ${fontSize}px system-ui, sans-serif`;
  context.textBaseline = "top";
  for (const face of faces) {
    const left = face.box.left * scaleX;
    const top = face.box.top * scaleY;
    const colour = COLOURS[face.class] ?? "#333";
    context.lineWidth = stroke;
    context.strokeStyle = colour;
    context.strokeRect(left, top, face.box.width * scaleX, face.box.height * scaleY);
    const text = faceLabel(face);
    const textWidth = context.measureText(text).width + 2 * stroke;
    const textTop = Math.max(0, top - fontSize - 2 * stroke);
    context.fillStyle = colour;
    context.fillRect(left, textTop, textWidth, fontSize + 2 * stroke);
    context.fillStyle = "#fff";
    context.fillText(text, left + stroke, textTop + stroke);
  }
}

function listFaces(faces) {
  facesList.replaceChildren(
    ...faces.map((face, index) => {
      const item = document.createElement("li");
      item.textContent = `Face ${index + 1}: ${faceLabel(face)}`;
      return item;
    }),
  );
}

async function analyse(file) {
  reset();
  if (!file) {
    return;
  }
  const request = ++latestRequest;
  statusLine.textContent = "Looking for faces…";
  const picture = loadPicture(file);
  const form = new FormData();
  form.append("image", file);
  let body;
  try {
    const response = await fetch("/api/gender", { method: "POST", body: form });
    body = await response.json();
  } catch {
    body = { success: false, error: { code: "unreachable", message: "the service could not be reached" } };
  }
  const decoded = await picture;
  if (request !== latestRequest) {
    return;
  }
  statusLine.textContent = "";
  if (body?.success === true) {
    drawFaces(decoded, body.image, body.faces);
    listFaces(body.faces);
    statusLine.textContent = body.faces.length === 1 ? "1 face found." : `${body.faces.length} faces found.`;
  } else {
    drawFaces(decoded, null, []);
    showError(body?.error);
  }
}

input.addEventListener("change", () => analyse(input.files[0]));
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
});
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  analyse(event.dataTransfer.files[0]);
});
