"""``GET /bot``: the bot's chat page, one self-contained HTML document talking to ``POST /v1/chat``.

Its script and style are inline (no CDN, no asset route), so it works offline; its
Content-Security-Policy lets it talk to this server only. Like the server's ``/chat`` page it
holds no data: the API key is typed in (kept in the tab's ``sessionStorage``) and sent as
``Authorization: Bearer``. The session id is made in the tab (``crypto.randomUUID``) and kept
until "New session", so the server counts the tab's turns and failures as one session.
Every text the server sends is put in with ``textContent``, never as HTML.
"""

from __future__ import annotations

__all__ = ["BOT_PAGE", "BOT_PAGE_HEADERS"]

BOT_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

BOT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lmforge support bot</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:1rem auto;padding:0 1rem;color:#222}
header{display:flex;gap:.5rem;flex-wrap:wrap;align-items:center;margin-bottom:.5rem}
input,button{font:inherit;padding:.3rem}
#log{border:1px solid #ccc;border-radius:6px;padding:.5rem;min-height:12rem}
.turn{white-space:pre-wrap;margin:.4rem 0}.user{color:#0645ad}.bot{color:#222}
.fallback{color:#666;font-style:italic}.escalation{color:#8a4b00;font-weight:600}
.sources{font-size:.85rem;color:#555;margin:.1rem 0 .6rem 1rem}.error{color:#b00}
form{display:flex;gap:.5rem;margin-top:.5rem}#question{flex:1}
</style></head><body>
<header><strong>lmforge support bot</strong>
<label>API key <input id="key" type="password" autocomplete="off" size="28"></label>
<span>session <code id="session"></code></span>
<button id="new-session" type="button">New session</button></header>
<div id="log" aria-live="polite"></div>
<form id="form"><input id="question" placeholder="Ask a question" autocomplete="off">
<button id="send" type="submit">Send</button></form>
<p id="status"></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const FALLBACK = "Sorry, I can only answer questions about our service. Could you rephrase?";
function newSession() {
  const id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^\\w.:-]/g, "");
  sessionStorage.setItem("lmforge-bot-session", id);
  $("session").textContent = id;
  $("log").textContent = "";
}
$("key").value = sessionStorage.getItem("lmforge-key") || "";
$("key").addEventListener("change", () => sessionStorage.setItem("lmforge-key", $("key").value));
$("session").textContent = sessionStorage.getItem("lmforge-bot-session") || "";
if (!$("session").textContent) newSession();
$("new-session").addEventListener("click", newSession);
function add(className, text) {
  const div = document.createElement("div");
  div.className = className;
  div.textContent = text;
  $("log").appendChild(div);
  return div;
}
function show(reply) {
  const answer = add("turn bot", reply.answer === null ? FALLBACK : reply.answer);
  if (reply.answer === null) answer.classList.add("fallback");
  answer.dataset.turn = String(reply.turn);
  answer.dataset.reason = reply.reason;
  answer.dataset.intent = reply.intent === null ? "" : reply.intent;
  if (reply.sources.length) {
    const list = document.createElement("ol");
    list.className = "sources";
    for (const source of reply.sources) {
      const item = document.createElement("li");
      item.textContent = source.question + " (score " + source.score.toFixed(3) + ")";
      list.appendChild(item);
    }
    $("log").appendChild(list);
  }
  if (reply.escalate) add("escalation", "A person will take over this conversation (" + reply.reason + ").");
}
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("question").value.trim();
  if (!text) return;
  $("question").value = "";
  add("turn user", text);
  $("send").disabled = true;
  $("status").textContent = "answering…";
  try {
    const response = await fetch("/v1/chat", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + $("key").value},
      body: JSON.stringify({session_id: $("session").textContent, text: text})});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || ("HTTP " + response.status));
    show(body);
    $("status").textContent = "turn " + body.turn;
  } catch (error) {
    add("turn error", String(error.message || error));
    $("status").textContent = "error";
  } finally {
    $("send").disabled = false;
  }
});
</script></body></html>
"""
