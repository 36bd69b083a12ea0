// The sandbox inbox page: loads recent messages, then follows the live SSE stream.
// Message text comes from user-supplied templates: it is only ever set as textContent.
"use strict";

const MAX_SHOWN = 500;
const list = document.getElementById("messages");
const empty = document.getElementById("empty");
const filterInput = document.getElementById("filter");
const live = document.getElementById("live");
const count = document.getElementById("count");
const shown = new Map(); // message id -> { message, element }

function digits(text) {
  return (text || "").replace(/\D/g, "");
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function statusOf(message) {
  return Date.now() < Date.parse(message.settlesAt) ? "sending" : message.finalStatus;
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const area = el("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1200);
}

function render(message, fresh) {
  const item = el("li", "message" + (fresh ? " fresh" : ""));
  item.dataset.id = message.id;
  item.dataset.to = message.to;
  item.dataset.verificationId = message.verificationId;
  const codeBox = el("div", "code-box");
  codeBox.appendChild(el("span", "code", message.code));
  const button = el("button", "copy", "Copy");
  button.type = "button";
  button.title = "Copy the code";
  button.addEventListener("click", () => copy(message.code, button));
  codeBox.appendChild(button);
  item.appendChild(codeBox);

  const meta = el("div", "meta");
  meta.appendChild(el("span", "to", "+" + message.to));
  meta.appendChild(el("span", "badge channel", message.channel));
  const status = statusOf(message);
  meta.appendChild(el("span", "badge status " + status, status));
  const time = el("time", "time", new Date(message.time).toLocaleString());
  time.dateTime = message.time;
  meta.appendChild(time);
  item.appendChild(meta);
  item.appendChild(el("div", "text", message.text));
  const ids = ["verification " + message.verificationId, "app " + message.appId];
  if (message.orderId) ids.push("order " + message.orderId);
  item.appendChild(el("div", "ids", ids.join(" · ")));
  return item;
}

function matchesFilter(message) {
  const wanted = digits(filterInput.value);
  return wanted === "" || message.to.startsWith(wanted);
}

function applyFilter() {
  let visible = 0;
  for (const { message, element } of shown.values()) {
    element.hidden = !matchesFilter(message);
    if (!element.hidden) visible += 1;
  }
  empty.hidden = visible > 0;
  count.textContent = visible === 1 ? "1 message" : visible + " messages";
}

// Adds a message in id order (newest first); ignores ones already shown.
function add(message, fresh) {
  if (shown.has(message.id)) return;
  const element = render(message, fresh);
  let before = list.firstElementChild;
  while (before && Number(before.dataset.id) > message.id) before = before.nextElementSibling;
  list.insertBefore(element, before);
  shown.set(message.id, { message, element });
  while (shown.size > MAX_SHOWN) {
    const oldest = list.lastElementChild;
    shown.delete(Number(oldest.dataset.id));
    oldest.remove();
  }
}

async function load() {
  const response = await fetch("inbox.json?limit=" + MAX_SHOWN, { cache: "no-store" });
  if (!response.ok) throw new Error("inbox.json: HTTP " + response.status);
  const messages = await response.json();
  for (const message of messages.reverse()) add(message, false);
  applyFilter();
}

function refreshStatuses() {
  for (const { message, element } of shown.values()) {
    const badge = element.querySelector(".status");
    const status = statusOf(message);
    if (badge.textContent !== status) {
      badge.textContent = status;
      badge.className = "badge status " + status;
    }
  }
}

function follow() {
  const events = new EventSource("inbox/stream");
  events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  events.onmessage = (event) => {
    add(JSON.parse(event.data), true);
    applyFilter();
  };
  // Fell behind the broadcast: re-read what is stored.
  events.addEventListener("lagged", () => { load().catch(() => {}); });
}

const initial = new URLSearchParams(location.search).get("to");
if (initial) filterInput.value = digits(initial);
filterInput.addEventListener("input", () => {
  const url = new URL(location.href);
  const wanted = digits(filterInput.value);
  if (wanted) url.searchParams.set("to", wanted); else url.searchParams.delete("to");
  history.replaceState(null, "", url);
  applyFilter();
});
setInterval(refreshStatuses, 1000);
// Subscribe first, then load: a message delivered in between arrives twice and is shown once.
follow();
load().catch((error) => { empty.textContent = "Could not load the inbox: " + error.message; });
