/* Keel web: the only script besides htmx. No inline script anywhere (the CSP forbids it). */
(function () {
  "use strict";
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  // Every htmx request carries the CSRF token in a header.
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });
  // Inline edit: Enter saves, Escape reloads the row's list.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && t.classList && t.classList.contains("cell-input") && e.key === "Enter") {
      e.preventDefault();
      var b = t.closest("td").querySelector(".save-cell");
      if (b) b.click();
    }
  });
  // Lookup picker: choosing an option fills the hidden id and the visible name.
  function choose(opt) {
    var id = opt.getAttribute("data-target");
    var hidden = document.getElementById(id);
    var shown = document.getElementById(id + "-search");
    if (hidden) hidden.value = opt.getAttribute("data-id");
    if (shown) { shown.value = opt.getAttribute("data-name"); shown.setAttribute("aria-expanded", "false"); shown.focus(); }
    var list = opt.closest(".lookup-results");
    if (list) list.innerHTML = "";
  }
  document.addEventListener("click", function (e) {
    var opt = e.target.closest && e.target.closest(".lookup-option");
    if (opt) { e.preventDefault(); choose(opt); }
  });
  document.addEventListener("keydown", function (e) {
    var opt = e.target.closest && e.target.closest(".lookup-option");
    if (opt && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); choose(opt); }
    if (e.target.getAttribute && e.target.getAttribute("role") === "combobox" && e.key === "ArrowDown") {
      var first = document.querySelector("#" + e.target.getAttribute("aria-controls") + " .lookup-option");
      if (first) { e.preventDefault(); first.focus(); }
    }
  });
  document.addEventListener("input", function (e) {
    var t = e.target;
    if (t.getAttribute && t.getAttribute("role") === "combobox") {
      var hidden = document.getElementById(t.id.replace(/-search$/, ""));
      if (hidden && t.value === "") hidden.value = "";
      t.setAttribute("aria-expanded", "true");
    }
  });
  // Dependent picklists: show only the values valid for the controlling field's value.
  function syncDependents() {
    document.querySelectorAll("select[data-controller]").forEach(function (sel) {
      var ctl = document.getElementById(sel.getAttribute("data-controller"));
      if (!ctl) return;
      var v = ctl.type === "checkbox" ? (ctl.checked ? "true" : "false") : ctl.value;
      sel.querySelectorAll("option[data-valid-for]").forEach(function (o) {
        var ok = o.getAttribute("data-valid-for").split(";").indexOf(v) >= 0;
        o.hidden = !ok; o.disabled = !ok;
        if (!ok && o.selected) sel.value = "";
      });
    });
  }
  document.addEventListener("change", syncDependents);
  document.addEventListener("DOMContentLoaded", syncDependents);

  // Kanban: a drop (or the keyboard "Move to" select) posts an ordinary update; a refusal snaps the card back.
  function board() { return document.querySelector(".kanban"); }
  function message(text) {
    var m = document.getElementById("kanban-msg");
    if (!m) return;
    m.textContent = text; m.hidden = !text;
  }
  function updateCounts() {
    document.querySelectorAll(".lane").forEach(function (lane) {
      var n = lane.querySelector(".n");
      if (n) n.textContent = lane.querySelectorAll(".kcard").length;
    });
  }
  function move(card, lane) {
    var b = board();
    var from = card.parentNode, next = card.nextSibling;
    if (lane.querySelector(".cards") === from) return;
    lane.querySelector(".cards").appendChild(card); // optimistic
    updateCounts();
    card.classList.add("pending");
    var body = new URLSearchParams();
    body.set("id", card.getAttribute("data-id"));
    body.set("field", b.getAttribute("data-field"));
    body.set("value", lane.getAttribute("data-value"));
    body.set("csrf_token", csrf());
    fetch("/o/" + b.getAttribute("data-object") + "/kanban/move", {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf(), "Content-Type": "application/x-www-form-urlencoded"}
    }).then(function (r) {
      return r.text().then(function (t) { return {ok: r.ok, text: t}; });
    }).then(function (res) {
      card.classList.remove("pending");
      if (res.ok) {
        message("");
        var sel = card.querySelector(".kmove"); if (sel) sel.value = "";
      } else {
        from.insertBefore(card, next); // snap back
        var s2 = card.querySelector(".kmove"); if (s2) s2.value = "";
        card.classList.add("refused");
        setTimeout(function () { card.classList.remove("refused"); }, 1500);
        message(res.text || "The move was refused.");
      }
      updateCounts();
    }).catch(function () {
      card.classList.remove("pending");
      from.insertBefore(card, next); updateCounts();
      message("The server could not be reached; the card was put back.");
    });
  }
  document.addEventListener("dragstart", function (e) {
    var card = e.target.closest && e.target.closest(".kcard");
    if (!card) return;
    e.dataTransfer.setData("text/plain", card.getAttribute("data-id"));
    e.dataTransfer.effectAllowed = "move";
  });
  document.addEventListener("dragover", function (e) {
    if (e.target.closest && e.target.closest(".lane")) e.preventDefault();
  });
  document.addEventListener("drop", function (e) {
    var lane = e.target.closest && e.target.closest(".lane");
    if (!lane) return;
    e.preventDefault();
    var id = e.dataTransfer.getData("text/plain");
    var card = document.querySelector('.kcard[data-id="' + CSS.escape(id) + '"]');
    if (card) move(card, lane);
  });
  document.addEventListener("change", function (e) {
    if (!e.target.classList || !e.target.classList.contains("kmove") || !e.target.value && e.target.value !== "") return;
    if (e.target.selectedIndex === 0) return;
    var card = e.target.closest(".kcard");
    var lane = document.querySelector('.lane[data-value="' + CSS.escape(e.target.value) + '"]');
    if (card && lane) move(card, lane);
  });
})();
