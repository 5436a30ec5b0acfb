// escrowlab dashboard: live updates over server-sent events, and a session that slides.
// /dashboard/events?view=V sends "snapshot" events carrying the view's freshly rendered
// <main>; elements marked data-live whose markup changed are swapped in place (and flash).
// If the set of live elements changed (a new order, a channel gone), <main> is replaced.
// Every third of the token's life, POST /dashboard/session renews the session cookie.
(() => {
  "use strict";
  const body = document.body;
  const view = body.dataset.view;
  const status = document.getElementById("live-status");
  const renewMs = Math.max(10, Number(body.dataset.renewS) || 300) * 1000;
  let received = 0;

  const keys = (root) => Array.from(root.querySelectorAll("[data-live]"), (el) => el.dataset.live).join("|");

  function show(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live " + (cls || "");
  }

  function apply(html) {
    const main = document.querySelector("main");
    const next = document.createElement("template");
    next.innerHTML = html;
    if (keys(next.content) !== keys(main)) {
      main.replaceChildren(next.content);
      return;
    }
    for (const fresh of next.content.querySelectorAll("[data-live]")) {
      const selector = '[data-live="' + CSS.escape(fresh.dataset.live) + '"]';
      const current = main.querySelector(selector);
      if (current && current.outerHTML !== fresh.outerHTML) {
        current.replaceWith(fresh);
        fresh.classList.add("changed");
        setTimeout(() => fresh.classList.remove("changed"), 1500);
      }
    }
  }

  async function renew() {
    try {
      const answer = await fetch("/dashboard/session", { method: "POST", credentials: "same-origin" });
      if (answer.status === 401) {
        show("signed out", "bad");
        const link = document.createElement("a");
        link.href = "/dashboard/login?next=" + encodeURIComponent(location.pathname);
        link.textContent = " sign in again";
        if (status) status.append(link);
        return false;
      }
    } catch (err) {
      show("app unreachable", "bad");
    }
    return true;
  }

  let source = null;
  function connect() {
    source = new EventSource("/dashboard/events?view=" + encodeURIComponent(view));
    source.addEventListener("snapshot", (event) => {
      const message = JSON.parse(event.data);
      apply(message.html);
      received += 1;
      body.dataset.liveEvents = String(received);
      if (status) status.dataset.events = String(received);
      show("live · " + message.at, "ok");
    });
    source.addEventListener("signed_out", async () => {
      source.close();
      if (await renew()) connect();
    });
    source.onerror = async () => {
      show("reconnecting…", "warn");
      if (source.readyState === EventSource.CLOSED && (await renew())) setTimeout(connect, 2000);
    };
  }

  if (view) {
    connect();
    setInterval(renew, renewMs);
  }
})();
