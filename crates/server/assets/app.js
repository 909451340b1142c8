// signoff's web inbox: the one script. It keeps a live page up to date without a reload, runs
// the approve and reject dialogs (checked before they are sent, Enter sends, Escape closes),
// counts down to due times by the server's clock, and looks people up for delegation.
// Everything works from the markup: the script listens on the document, so a <main> swapped in
// by a refresh needs nothing set up again.
"use strict";

(function () {
  // --- Live pages -------------------------------------------------------------------------
  // A page that names a stream in <body data-stream> is fetched again whenever the stream says
  // something changed, and its <main> swapped in, unless the person is in the middle of
  // filling in a form there; then it is refreshed once they leave the form.
  let busy = false;
  let again = false;
  let stale = false;

  function typing(main) {
    if (main.querySelector("dialog[open]")) {
      return true;
    }
    const focused = document.activeElement;
    if (focused && main.contains(focused) && focused.matches("input, textarea, select")) {
      return true;
    }
    return Array.from(main.querySelectorAll("textarea, input[type=text], input[type=search]")).some((f) => f.value !== "");
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const main = document.querySelector("main");
      if (main && typing(main)) {
        stale = true;
      } else if (main) {
        stale = false;
        const resp = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (resp.ok && !resp.redirected) {
          const page = new DOMParser().parseFromString(await resp.text(), "text/html");
          const fresh = page.querySelector("main");
          if (fresh) {
            tick(fresh);
          }
          if (fresh && fresh.innerHTML !== main.innerHTML) {
            // Keep the focus where it was (by id), and tell a screen reader what changed.
            const focused = main.contains(document.activeElement) ? document.activeElement.id : "";
            main.replaceWith(document.adoptNode(fresh));
            document.title = page.title;
            settle();
            const back = focused && document.getElementById(focused);
            if (back) {
              back.focus();
            }
            const announce = document.getElementById("announce");
            if (announce) {
              announce.textContent = "Updated: " + page.title;
            }
          }
        }
      }
    } catch (e) {
      // The next change tries again; the page stays as it was.
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  function catchUp() {
    if (stale) {
      refresh();
    }
  }

  const stream = document.body.dataset.stream;
  if (stream && window.EventSource) {
    const source = new EventSource(stream);
    for (const kind of ["request", "state", "resync"]) {
      source.addEventListener(kind, refresh);
    }
    document.addEventListener("focusout", () => setTimeout(catchUp, 0));
  }

  // --- Dialogs ----------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-dialog]");
    if (opener && !opener.disabled) {
      const dialog = document.getElementById(opener.dataset.dialog);
      if (dialog && !dialog.open) {
        dialog.showModal();
      }
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) {
      closer.closest("dialog").close();
    }
  });

  // A dialog that closes (Escape, Cancel) lets a refresh it held back through.
  document.addEventListener("close", () => setTimeout(catchUp, 0), true);

  document.addEventListener("keydown", (event) => {
    const field = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && field.matches("dialog textarea")) {
      event.preventDefault();
      field.form.requestSubmit();
    }
  });

  // What is wrong with one field, in the schema's words where it has them; "" when nothing is.
  function wrong(field) {
    if (field.validity.valid) {
      return "";
    }
    return field.dataset.error || field.validationMessage;
  }

  function say(field, message) {
    const error = document.getElementById(field.id + "-error");
    if (error) {
      error.textContent = message;
    }
    if (message) {
      field.setAttribute("aria-invalid", "true");
    } else {
      field.removeAttribute("aria-invalid");
    }
    field.closest(".field")?.classList.toggle("invalid", message !== "");
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.closest("dialog")) {
      return;
    }
    let first = null;
    for (const field of form.querySelectorAll("input:not([type=hidden]), textarea, select")) {
      const message = wrong(field);
      say(field, message);
      if (message && !first) {
        first = field;
      }
    }
    if (first) {
      event.preventDefault();
      first.focus();
      return;
    }
    // Sent once: a second click waits for the answer (the idempotency key covers the rest).
    for (const button of form.querySelectorAll("button[type=submit]")) {
      button.disabled = true;
    }
  });

  document.addEventListener("input", (event) => {
    const field = event.target;
    if (field.closest("dialog") && field.getAttribute("aria-invalid")) {
      say(field, wrong(field));
    }
    if (field.matches("[data-people]")) {
      lookUp(field);
    }
  });

  // --- Countdowns -------------------------------------------------------------------------
  // <main data-now> is the server's clock when the page was drawn; times count from it.
  let skew = 0;

  function relative(ms) {
    const ahead = ms >= 0;
    const secs = Math.floor(Math.abs(ms) / 1000);
    let span;
    if (secs < 60) {
      span = "under a minute";
    } else if (secs < 3600) {
      span = Math.floor(secs / 60) + " min";
    } else if (secs < 172800) {
      const minutes = Math.floor((secs % 3600) / 60);
      span = Math.floor(secs / 3600) + " h" + (minutes > 0 ? " " + minutes + " min" : "");
    } else {
      span = Math.floor(secs / 86400) + " days";
    }
    return ahead ? "in " + span : span + " ago";
  }

  function tick(root) {
    const now = Date.now() + skew;
    for (const t of (root || document).querySelectorAll("time[data-countdown]")) {
      const ms = Date.parse(t.getAttribute("datetime")) - now;
      t.textContent = relative(ms);
      t.classList.toggle("late", ms <= 0);
    }
  }

  // --- Looking people up ------------------------------------------------------------------
  let lookup = null;

  function lookUp(field) {
    clearTimeout(lookup);
    lookup = setTimeout(async () => {
      const list = document.getElementById(field.getAttribute("list"));
      if (!list) {
        return;
      }
      try {
        const resp = await fetch("/v1/users?limit=20&q=" + encodeURIComponent(field.value.trim()), { credentials: "same-origin" });
        if (!resp.ok) {
          return;
        }
        const found = (await resp.json()).items;
        list.replaceChildren(...found.map((u) => {
          const option = document.createElement("option");
          option.value = u.id;
          option.textContent = u.name || u.id;
          return option;
        }));
      } catch (e) {
        // The list stays as it was.
      }
    }, 150);
  }

  // --- A page drawn (or swapped in) -------------------------------------------------------
  function settle() {
    const main = document.querySelector("main");
    if (main && main.dataset.now) {
      skew = Number(main.dataset.now) - Date.now();
    }
    tick();
    const reopen = document.querySelector("dialog[data-open]");
    if (reopen && !reopen.open) {
      reopen.showModal();
      reopen.querySelector("[aria-invalid=true]")?.focus();
    }
  }

  settle();
  setInterval(() => tick(), 15000);
})();
