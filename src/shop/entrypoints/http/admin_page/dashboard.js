// The live sale dashboard: sign in through the API, then poll /api/admin/dashboard every
// second. Tokens live in sessionStorage (this tab only) and nothing is loaded from elsewhere.
"use strict";
(function () {
  const POLL_MS = 1000;
  const store = window.sessionStorage;
  const $ = (id) => document.getElementById(id);
  let timer = null;

  function tokens() {
    return { access: store.getItem("shop.access"), refresh: store.getItem("shop.refresh") };
  }
  function keep(pair) {
    store.setItem("shop.access", pair.access_token);
    store.setItem("shop.refresh", pair.refresh_token);
  }
  function forget() {
    store.removeItem("shop.access");
    store.removeItem("shop.refresh");
  }

  async function postJson(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  async function refresh() {
    const { refresh } = tokens();
    if (!refresh) return false;
    const answer = await postJson("/api/auth/refresh", { refresh_token: refresh });
    if (!answer.ok) return false;
    keep(await answer.json());
    return true;
  }

  async function fetchBoard() {
    let answer = await fetch("/api/admin/dashboard", {
      headers: { Authorization: "Bearer " + tokens().access },
    });
    if (answer.status === 401 && (await refresh())) {
      answer = await fetch("/api/admin/dashboard", {
        headers: { Authorization: "Bearer " + tokens().access },
      });
    }
    return answer;
  }

  function spark(svg, values) {
    const line = svg.querySelector("polyline");
    if (values.length < 2) { line.setAttribute("points", ""); return; }
    const max = Math.max(...values, 1), min = Math.min(...values, 0);
    const span = max - min || 1;
    const step = 120 / (values.length - 1);
    line.setAttribute("points", values
      .map((v, i) => (i * step).toFixed(1) + "," + (23 - ((v - min) / span) * 22).toFixed(1))
      .join(" "));
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (cls) td.className = cls;
    return td;
  }

  function optionRow(option) {
    const tr = document.createElement("tr");
    tr.dataset.optionId = option.option_id;
    tr.append(cell("#" + option.option_id), cell(option.on_sale), cell(option.sold, "sold-n"),
      cell(option.held), cell(option.left, "left-n"));
    const barCell = document.createElement("td");
    barCell.append(soldHeldBar(option));
    const sparkCell = document.createElement("td");
    sparkCell.append(sparkline("spark", option.left_history));
    tr.append(barCell, sparkCell, cell(option.drift, option.drift ? "bad" : "ok"));
    return tr;
  }

  // A bar of what is sold and held out of what is on sale (an option's or a drop's).
  function soldHeldBar(figures) {
    const bar = document.createElement("span");
    bar.className = "bar";
    const total = Math.max(figures.on_sale, 1);
    for (const [cls, units] of [["sold", figures.sold], ["held", figures.held]]) {
      const part = document.createElement("span");
      part.className = cls;
      part.style.width = Math.min(100, (100 * units) / total) + "%";
      bar.append(part);
    }
    return bar;
  }

  // A small line of recent values, drawn by spark().
  function sparkline(cls, history) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", cls);
    svg.setAttribute("viewBox", "0 0 120 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.append(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    spark(svg, history);
    return svg;
  }

  function figure(label, value, cls) {
    const div = document.createElement("div");
    div.className = "figure";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const number = document.createElement("span");
    number.className = "n " + cls;
    number.textContent = String(value);
    div.append(name, number);
    return div;
  }

  function countdown(drop) {
    if (drop.status === "sold_out") return "sold out";
    if (drop.starts_in_seconds > 0) return "starts in " + Math.ceil(drop.starts_in_seconds) + " s";
    return drop.status === "scheduled" ? "opening" : drop.status;
  }

  // One card per drop: its countdown, what its options have left, its waiting room.
  function dropPanel(drop) {
    const div = document.createElement("div");
    div.className = "card drop";
    div.dataset.dropId = drop.drop_id;
    div.dataset.status = drop.status;
    const title = document.createElement("div");
    title.className = "label";
    title.textContent = drop.name + " · options " + drop.option_ids.map((id) => "#" + id).join(", ");
    const when = document.createElement("div");
    when.className = "value countdown " + (drop.status === "live" ? "ok" : "");
    when.textContent = countdown(drop);
    const figures = document.createElement("div");
    figures.className = "figures";
    figures.append(
      figure("left", drop.left, "left-n"),
      figure("sold", drop.sold, "sold-n"),
      figure("held", drop.held, "held-n"),
      figure("queue", drop.queue_length, "queue-n"),
      figure("admitted", drop.admitted, "admitted-n"),
      figure("admitted / s", drop.admitted_per_second.toFixed(1), "admitted-rate-n"),
      figure("admission rate", drop.admission_rate + "/s", "rate-n"),
    );
    const bar = soldHeldBar(drop);
    const svg = sparkline("spark queue-spark", drop.queue_length_history);
    const drawn = document.createElement("div");
    drawn.className = "drawn";
    drawn.append("sold / held ", bar, " queue, last minute ", svg);
    div.append(title, when, figures, drawn);
    return div;
  }

  function render(board) {
    $("strategy").textContent = board.strategy || "–";
    for (const [id, value] of [["drift", board.drift], ["oversold", board.oversold]]) {
      $(id).textContent = value;
      $(id).className = "value " + (value ? "bad" : "ok");
    }
    $("purchases").textContent = board.purchases_per_second.toFixed(1);
    spark($("purchases-spark"), board.purchases_per_second_history);
    $("rate").textContent = board.sold_per_second.toFixed(1);
    spark($("rate-spark"), board.sold_per_second_history);
    $("sold-total").textContent = board.options.reduce((sum, o) => sum + o.sold, 0);
    const body = $("options");
    body.replaceChildren(...(board.options.length
      ? board.options.map(optionRow)
      : [Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="8" class="placeholder">no option on sale yet</td>' })]));
    if (board.drops_enabled) {
      $("drops").replaceChildren(...(board.drops.length
        ? board.drops.map(dropPanel)
        : [Object.assign(document.createElement("p"), { className: "placeholder", textContent: "no drop planned" })]));
    } else {
      $("drops").replaceChildren(Object.assign(document.createElement("p"),
        { className: "placeholder", textContent: "this shop has no drops source" }));
    }
    const banner = $("banner");
    if (board.taken_at === null) {
      banner.textContent = "No snapshot yet: is the background worker running?";
      banner.style.display = "block";
    } else if (!board.fresh) {
      banner.textContent = "The worker stopped reporting; these numbers are from " +
        new Date(board.taken_at * 1000).toLocaleTimeString() + ".";
      banner.style.display = "block";
    } else {
      banner.style.display = "none";
    }
    $("updated").textContent = board.taken_at
      ? "updated " + new Date(board.taken_at * 1000).toLocaleTimeString()
      : "waiting for data";
  }

  async function tick() {
    try {
      const answer = await fetchBoard();
      if (answer.status === 401 || answer.status === 403) {
        signedOut(answer.status === 403 ? "this account is not an admin" : "");
        return;
      }
      if (answer.ok) render(await answer.json());
    } catch (err) {
      $("updated").textContent = "connection lost, retrying";
    }
    timer = setTimeout(tick, POLL_MS);
  }

  function signedIn() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("signout").hidden = false;
    if (timer === null) tick();
  }

  function signedOut(message) {
    forget();
    if (timer !== null) { clearTimeout(timer); timer = null; }
    $("login").hidden = false;
    $("board").hidden = true;
    $("signout").hidden = true;
    $("login-error").textContent = message || "";
    $("updated").textContent = "not signed in";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await postJson("/api/auth/login", {
        email: $("email").value, password: $("password").value,
      });
      if (!answer.ok) {
        $("login-error").textContent = (await answer.json()).detail || "sign-in failed";
        return;
      }
      keep(await answer.json());
      signedIn();
    });
    $("signout").addEventListener("click", () => signedOut(""));
    if (tokens().access) signedIn();
  });
})();
