// The arena's page: ask the server for a pair, show it, send the rater's choice. Everything the server sends is
// put into the page as text (textContent), never as markup, so a completion cannot add elements or run script.
"use strict";

const RATER_KEY = "harness-arena-rater";
let current = null; // the presentation on screen: {presentation, prompt, left, right, ...}
let busy = false;
let shown = 0; // pairs shown so far, also on #arena as data-shown (what a test waits for)

const $ = (id) => document.getElementById(id);

function show(id, visible) {
  $(id).hidden = !visible;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function rater() {
  return localStorage.getItem(RATER_KEY) || "";
}

async function call(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = {};
  try {
    body = await response.json();
  } catch (_) {
    body = { error: `the server answered ${response.status} without JSON` };
  }
  if (!response.ok) {
    throw new Error(body.error || `the server answered ${response.status}`);
  }
  return body;
}

async function next() {
  busy = true;
  current = null;
  try {
    const pair = await call(`/api/next?rater=${encodeURIComponent(rater())}`);
    if (pair.done) {
      show("arena", false);
      show("done", true);
      say(`${pair.voted} votes recorded.`);
      return;
    }
    current = pair;
    $("prompt").textContent = pair.prompt;
    $("left").textContent = pair.left;
    $("right").textContent = pair.right;
    shown += 1;
    $("arena").dataset.shown = String(shown);
    show("done", false);
    show("arena", true);
  } catch (error) {
    say(error.message, true);
  } finally {
    busy = false;
  }
}

async function vote(choice) {
  if (busy || !current) {
    return;
  }
  busy = true;
  try {
    await call("/api/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ presentation: current.presentation, rater: rater(), choice }),
    });
    say(`Vote recorded (${current.voted + 1} so far).`);
  } catch (error) {
    say(error.message, true);
  }
  busy = false;
  await next();
}

function signIn() {
  const name = $("rater-name").value.trim();
  if (!name) {
    say("Type your name first.", true);
    return;
  }
  localStorage.setItem(RATER_KEY, name);
  start();
}

function start() {
  const name = rater();
  show("signin", !name);
  show("who", Boolean(name));
  show("arena", false);
  $("rater-shown").textContent = name;
  if (name) {
    say("");
    next();
  } else {
    $("rater-name").focus();
  }
}

const KEYS = { a: "left", ArrowLeft: "left", b: "right", ArrowRight: "right", t: "tie", ArrowDown: "tie" };

document.addEventListener("DOMContentLoaded", () => {
  $("rater-save").addEventListener("click", signIn);
  $("rater-name").addEventListener("keydown", (event) => {
    if (event.key === "Enter") signIn();
  });
  $("rater-change").addEventListener("click", () => {
    localStorage.removeItem(RATER_KEY);
    $("rater-name").value = "";
    start();
  });
  $("vote-left").addEventListener("click", () => vote("left"));
  $("vote-tie").addEventListener("click", () => vote("tie"));
  $("vote-right").addEventListener("click", () => vote("right"));
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || $("arena").hidden) return;
    const choice = KEYS[event.key];
    if (choice) vote(choice);
  });
  start();
});
