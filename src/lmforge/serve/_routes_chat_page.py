"""``GET /chat``: a self-contained chat page that streams answers from ``/v1/chat/completions``.

One HTML document with its script and style inline (no CDN, no asset route), so it works
offline; its Content-Security-Policy lets it talk to this server only. The page holds no data:
the API key is typed into it (kept in the tab's ``sessionStorage``) and sent as
``Authorization: Bearer``, so the page itself needs no key to load.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["chat_page_router"]

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lmforge chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:1rem auto;padding:0 1rem;color:#222}
header{display:flex;gap:.5rem;flex-wrap:wrap;align-items:center;margin-bottom:.5rem}
input,textarea,button{font:inherit;padding:.3rem}
#log{border:1px solid #ccc;border-radius:6px;padding:.5rem;min-height:12rem}
.turn{white-space:pre-wrap;margin:.4rem 0}.user{color:#0645ad}.assistant{color:#222}
.error{color:#b00}form{display:flex;gap:.5rem;margin-top:.5rem}#prompt{flex:1}
</style></head><body>
<header><strong>lmforge chat</strong>
<label>API key <input id="key" type="password" autocomplete="off" size="28"></label>
<label>model <input id="model" size="12" placeholder="default"></label>
<label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7"
 style="width:4rem"></label>
<label>max tokens <input id="max-tokens" type="number" min="1" value="256" style="width:5rem"></label>
<button id="clear" type="button">Clear</button></header>
<div id="log" aria-live="polite"></div>
<form id="form"><textarea id="prompt" rows="2" placeholder="Type a message"></textarea>
<button id="send" type="submit">Send</button></form>
<p id="status"></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const history = [];
$("key").value = sessionStorage.getItem("lmforge-key") || "";
$("key").addEventListener("change", () => sessionStorage.setItem("lmforge-key", $("key").value));
function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role;
  div.dataset.role = role;
  div.textContent = text;
  $("log").appendChild(div);
  return div;
}
$("clear").addEventListener("click", () => { history.length = 0; $("log").textContent = ""; });
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  history.push({role: "user", content: text});
  addTurn("user", text);
  const out = addTurn("assistant", "");
  $("send").disabled = true;
  $("status").textContent = "answering…";
  const body = {messages: history, stream: true, temperature: Number($("temperature").value),
                max_tokens: Number($("max-tokens").value)};
  if ($("model").value.trim()) body.model = $("model").value.trim();
  let answer = "", finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + $("key").value},
      body: JSON.stringify(body)});
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || ("HTTP " + response.status));
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) { answer += choice.delta.content; out.textContent = answer; }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    history.push({role: "assistant", content: answer});
    out.dataset.finish = finish || "";
    $("status").textContent = "done (" + (finish || "?") + ")";
  } catch (error) {
    history.pop();
    out.className = "turn error";
    out.textContent = String(error.message || error);
    $("status").textContent = "error";
  } finally {
    $("send").disabled = false;
  }
});
</script></body></html>
"""


def chat_page_router() -> APIRouter:
    """``GET /chat``: the page (no key needed to load it; every request it makes sends one)."""
    router = APIRouter()

    @router.get("/chat", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})

    return router
