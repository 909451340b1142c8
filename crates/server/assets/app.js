// signoff's web inbox: keeps a live page up to date without a reload. A page that names a
// stream in <body data-stream> is fetched again whenever the stream says something changed,
// and its <main> swapped in, unless the person is in the middle of filling in a form there.
"use strict";

(function () {
  const stream = document.body.dataset.stream;
  if (!stream || !window.EventSource) {
    return;
  }
  let busy = false;
  let again = false;

  function typing(main) {
    const focused = document.activeElement;
    if (focused && main.contains(focused) && focused.matches("input, textarea, select")) {
      return true;
    }
    return Array.from(main.querySelectorAll("textarea, input[type=text]")).some((f) => f.value !== "");
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const main = document.querySelector("main");
      if (main && !typing(main)) {
        const resp = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (resp.ok && !resp.redirected) {
          const page = new DOMParser().parseFromString(await resp.text(), "text/html");
          const fresh = page.querySelector("main");
          if (fresh && fresh.innerHTML !== main.innerHTML) {
            main.replaceWith(document.adoptNode(fresh));
            document.title = page.title;
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

  const source = new EventSource(stream);
  for (const kind of ["request", "state", "resync"]) {
    source.addEventListener(kind, refresh);
  }
})();
