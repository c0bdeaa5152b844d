// The arena's page: ask the server for a pair, show it, send the rater's choice. Everything the server sends is
// put into the page as text (textContent), never as markup, so a completion cannot add elements or run script.
//
// A vote is one deliberate act on a pair that was read: the buttons and keys do nothing until the pair has been
// visible for the server's `dwell_ms` (the bar under the pair fills meanwhile; the server refuses an earlier vote
// anyway), nor while a vote is being sent or the next pair loads. A held key (its repeats), a key pressed with
// Ctrl, Alt, Meta or Shift, a key not released since the last vote, and events a script made cast nothing.
"use strict";

const RATER_KEY = "harness-arena-rater";
const TICK_MS = 100;
let current = null; // the presentation on screen and open to a vote: {presentation, prompt, left, right, dwell_ms, ...}
let busy = false; // a request is under way: nothing casts a vote
let shown = 0; // pairs shown so far, also on #arena as data-shown (what a test waits for)
let visibleMs = 0; // how long the current pair has been visible
let lastTick = 0;
let timer = null;
const held = new Set(); // keys down and not yet released

const $ = (id) => document.getElementById(id);
const BUTTONS = ["vote-left", "vote-tie", "vote-right"];

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

function ready() {
  return !busy && current !== null && visibleMs >= current.dwell_ms;
}

function setEnabled(enabled) {
  for (const id of BUTTONS) $(id).disabled = !enabled;
  $("arena").dataset.ready = enabled ? "1" : "0";
}

// Count the time the pair is visible (a hidden tab does not count), fill the bar, open the buttons at dwell_ms.
function tick() {
  const now = performance.now();
  if (document.visibilityState === "visible") visibleMs += now - lastTick;
  lastTick = now;
  if (!current) return;
  const dwell = Math.max(current.dwell_ms, 1);
  $("dwell").value = Math.min(visibleMs / dwell, 1);
  if (ready()) {
    setEnabled(true);
    $("dwell").classList.add("done");
    clearInterval(timer);
    timer = null;
  }
}

function startDwell() {
  visibleMs = 0;
  lastTick = performance.now();
  $("dwell").value = 0;
  $("dwell").classList.remove("done");
  if (timer !== null) clearInterval(timer);
  timer = setInterval(tick, TICK_MS);
  tick();
}

async function next() {
  busy = true;
  current = null;
  setEnabled(false);
  try {
    const pair = await call(`/api/next?rater=${encodeURIComponent(rater())}`);
    if (pair.done) {
      show("arena", false);
      show("done", true);
      say(`${pair.voted} votes recorded.`);
      return;
    }
    $("prompt").textContent = pair.prompt;
    $("left").textContent = pair.left;
    $("right").textContent = pair.right;
    // a button focused by the last click must not take Space or Enter as a vote on this pair
    if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
    current = pair;
    shown += 1;
    $("arena").dataset.shown = String(shown);
    show("done", false);
    show("arena", true);
  } catch (error) {
    say(error.message, true);
  } finally {
    busy = false;
  }
  if (current) startDwell();
}

async function vote(choice) {
  if (!ready()) {
    return;
  }
  const voted = current;
  busy = true;
  current = null; // one vote per pair: nothing else counts until the next pair is on screen
  setEnabled(false);
  try {
    await call("/api/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        presentation: voted.presentation,
        rater: rater(),
        choice,
        visible_ms: Math.floor(visibleMs),
      }),
    });
    say(`Vote recorded (${voted.voted + 1} so far).`);
  } catch (error) {
    say(error.message, true);
  }
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

function onKey(event) {
  const first = !held.has(event.code); // the physical key: Shift does not change it, as it changes event.key
  held.add(event.code);
  if (event.target instanceof HTMLInputElement || $("arena").hidden) return;
  const choice = KEYS[event.key];
  const modified = event.ctrlKey || event.altKey || event.metaKey || event.shiftKey || event.isComposing;
  if (!choice || modified) return; // Ctrl+A selects, Alt+Left goes back: the browser's, not a vote
  event.preventDefault(); // the arrows do not scroll the page under the rater
  if (event.isTrusted && first && !event.repeat) vote(choice);
}

function onClick(choice) {
  return (event) => {
    if (event.isTrusted && !event.currentTarget.disabled) vote(choice);
  };
}

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
  $("vote-left").addEventListener("click", onClick("left"));
  $("vote-tie").addEventListener("click", onClick("tie"));
  $("vote-right").addEventListener("click", onClick("right"));
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (event) => held.delete(event.code));
  window.addEventListener("blur", () => held.clear()); // a key released in another window sends no keyup here
  setEnabled(false);
  start();
});
