"use strict";
// The replog console: reads GET /console/cluster from the node that served the page every
// POLL_MS, draws a card per node, notes what changed between two readings as events, and
// appends through POST /console/append. Everything shown comes from that one node.

const POLL_MS = 1000;
const WAIT_MS = 5000;
const MAX_EVENTS = 100;

const $ = (id) => document.getElementById(id);
let previous = null;
const changed = new Map(); // node name -> { sig, at }
const seenSeq = new Map(); // node name -> highest seq shown

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour12: false });
}

// What a node is, in words and a tone (the tone only repeats the words in colour).
function describe(card, view) {
  const h = card.health;
  if (!card.reachable) {
    // What the master last saw of it, if it is a secondary the master knows.
    const health = card.standing ? card.standing.status : "unknown";
    return { role: "unreachable", state: "does not answer", health, tone: "bad" };
  }
  const role = h.role || "unknown";
  let state;
  let tone = "good";
  if (role === "master") {
    state = h.writable ? `${h.state}, takes writes` : `${h.state}, read-only: ${h.reason || "no writes taken"}`;
    if (!h.writable) tone = "warn";
  } else {
    state = "read-only (a secondary)";
  }
  let health = role === "master" ? "master" : "not known to the master";
  if (card.standing) {
    health = card.standing.status;
    if (health === "suspected") tone = "warn";
    else if (health !== "healthy") tone = "bad";
  } else if (role !== "master" && view.master) {
    tone = "warn";
  }
  return { role, state, health, tone };
}

function signature(card, words) {
  const h = card.health || {};
  const sha = (h.component && h.component.sha256) || "";
  return [words.role, h.epoch, words.state, words.health, sha, card.reachable].join("|");
}

function addEvent(text, tone) {
  const list = $("events");
  const item = el("li", { class: tone ? `tone-${tone}` : "" },
    el("time", { datetime: new Date().toISOString() }, clock(new Date())), text);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

// Events: what differs between two readings of the cluster.
function compare(before, now) {
  if (!before) {
    addEvent(`Console opened on ${now.served_by}; ${now.nodes.length} node(s) known.`);
    return;
  }
  if (before.master !== now.master) {
    const epoch = masterEpoch(now);
    addEvent(now.master
      ? `Master is now ${now.master}${epoch !== undefined ? ` (epoch ${epoch})` : ""}.`
      : "No master now: one is being elected.", now.master ? "warn" : "bad");
  }
  const old = new Map(before.nodes.map((card) => [card.name, card]));
  for (const card of now.nodes) {
    const was = old.get(card.name);
    if (!was) {
      addEvent(`${card.name} joined the view.`);
      continue;
    }
    if (was.reachable && !card.reachable) addEvent(`${card.name} does not answer: ${card.error}.`, "bad");
    if (!was.reachable && card.reachable) addEvent(`${card.name} answers again.`, "good");
    const status = card.standing && card.standing.status;
    const wasStatus = was.standing && was.standing.status;
    if (status && wasStatus && status !== wasStatus) {
      const text = status === "healthy" ? `${card.name} is back: healthy.` : `${card.name} is ${status} (as the master sees it).`;
      addEvent(text, status === "healthy" ? "good" : status === "suspected" ? "warn" : "bad");
    }
    const sha = card.health && card.health.component && card.health.component.sha256;
    const wasSha = was.health && was.health.component && was.health.component.sha256;
    const role = card.health && card.health.role;
    const wasRole = was.health && was.health.role;
    if (role && wasRole && role !== wasRole) addEvent(`${card.name} is now ${role}.`);
    // A change of role runs the other role's component: not a new version.
    else if (sha && wasSha && sha !== wasSha) {
      addEvent(`${card.name} runs a new component version: ${card.health.component.version} (sha256 ${sha.slice(0, 12)}).`);
    }
  }
}

function masterEpoch(view) {
  const master = view.nodes.find((card) => card.health && card.health.role === "master");
  return master ? master.health.epoch : undefined;
}

function field(list, name, value) {
  list.append(el("dt", {}, name), el("dd", {}, value === undefined || value === null ? "—" : value));
}

function drawCard(card, view) {
  const words = describe(card, view);
  const sig = signature(card, words);
  const mark = changed.get(card.name);
  if (!mark || mark.sig !== sig) changed.set(card.name, { sig, at: Date.now() });
  const h = card.health || {};
  const title = el("h3", {}, card.name,
    el("span", { class: `badge tone-${words.tone}` }, words.role));
  if (card.here) title.append(el("span", { class: "badge" }, "this node"));
  const facts = el("dl");
  field(facts, "URL", card.url || (card.here ? `${location.host} (this node)` : null));
  field(facts, "role", words.role);
  field(facts, "epoch", h.epoch);
  field(facts, "state", words.state);
  field(facts, "health", words.health);
  field(facts, "log length", h.count);
  field(facts, "commit point", h.committed);
  field(facts, "lag", card.standing ? `${card.standing.lag} behind` : null);
  const component = h.component || {};
  field(facts, "component", component.version);
  field(facts, "sha256", component.sha256 ? component.sha256.slice(0, 16) : null);
  field(facts, "running since", component.loaded_at ? new Date(component.loaded_at).toLocaleString() : null);
  field(facts, "last change", ago(changed.get(card.name).at));
  if (card.error) field(facts, "problem", card.error);
  const shown = seenSeq.get(card.name) || 0;
  const messages = el("ol", { class: "messages", "aria-label": `last messages on ${card.name}` });
  let highest = shown;
  for (const entry of card.last) {
    const text = typeof entry.msg === "string" ? entry.msg : JSON.stringify(entry.msg);
    const fresh = previous && entry.seq > shown;
    messages.append(el("li", { class: fresh ? "fresh" : "", "data-seq": entry.seq }, `#${entry.seq} ${text}`));
    highest = Math.max(highest, entry.seq);
  }
  seenSeq.set(card.name, highest);
  if (card.reachable && card.last.length === 0) messages.append(el("li", {}, "(no messages yet)"));
  return el("article", {
    class: "node", "data-node": card.name, "data-url": card.url || "", "data-role": words.role,
    "data-health": words.health, "data-tone": words.tone, "aria-label": `${card.name}: ${words.role}, ${words.health}`,
  }, title, facts, messages);
}

function draw(view) {
  const mode = view.elected ? "roles elected on etcd" : "fixed roles";
  $("about").textContent = `Served by ${view.served_by} · ${mode} · master: ${view.master || "none now"} · ` +
    `read ${clock(new Date(view.at_ms))}`;
  $("note").hidden = !view.note;
  $("note").textContent = view.note || "";
  $("nodes").replaceChildren(...view.nodes.map((card) => drawCard(card, view)));
}

function problem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

async function poll() {
  try {
    const answer = await fetch("/console/cluster", { cache: "no-store", signal: AbortSignal.timeout(WAIT_MS) });
    if (!answer.ok) throw new Error(`it answered ${answer.status}`);
    const view = await answer.json();
    problem(null);
    compare(previous, view);
    draw(view);
    previous = view;
  } catch (error) {
    const why = error.name === "TimeoutError" ? `no answer within ${WAIT_MS / 1000} s` : error.message;
    problem(`The node serving this page (${location.host}) does not answer: ${why}. Trying again every second.`);
    if (previous && !previous.unreachable) addEvent(`${previous.served_by} (this page's node) does not answer.`, "bad");
    if (previous) previous.unreachable = true;
  }
  setTimeout(poll, POLL_MS);
}

async function append(event) {
  event.preventDefault();
  const body = { msg: $("msg").value };
  if ($("w").value !== "") body.w = Number($("w").value);
  if ($("key").value !== "") body.id = $("key").value;
  const out = $("answer");
  $("send").disabled = true;
  out.className = "";
  out.textContent = "Appending…";
  const started = performance.now();
  try {
    const answer = await fetch("/console/append", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
      signal: AbortSignal.timeout(130000),
    });
    const took = Math.round(performance.now() - started);
    const reply = await answer.json().catch(() => ({}));
    if (answer.ok) {
      const acks = (reply.acks || []).map((ack) => ack.secondary || JSON.stringify(ack)).join(", ") || "the master alone";
      out.textContent = `Appended as #${reply.seq} with w=${reply.w}: held by ${acks}; ` +
        `the master took ${reply.duration_ms} ms, ${took} ms here.`;
      $("msg").value = "";
    } else {
      out.className = "failed";
      out.textContent = `Not appended (${answer.status}): ${reply.error || answer.statusText}` +
        (reply.seq ? ` (seq ${reply.seq})` : "");
    }
  } catch (error) {
    out.className = "failed";
    out.textContent = `Not appended: ${error.message}`;
  } finally {
    $("send").disabled = false;
    $("msg").focus();
  }
}

$("append").addEventListener("submit", append);
setInterval(() => { if (previous) draw(previous); }, 5000);
poll();
