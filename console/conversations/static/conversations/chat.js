// Progressive enhancement of the chat page: ask and vote without reloading, show that the model
// is working, and stream the answer's text as it is written (the server sends one JSON object a
// line: {"delta"}..., then {"html"} or {"error"}). Without JavaScript the same forms post and redirect.
(function () {
  "use strict";

  function post(form, submitter) {
    const body = new FormData(form);
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    return fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    }).then(function (response) {
      return response.text().then(function (html) {
        return { ok: response.ok, html: html };
      });
    });
  }

  // POST the question and call onDelta(text) for each piece; resolves to {ok, html} at the end.
  function ask(form, onDelta) {
    return fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", Accept: "application/x-ndjson" },
    }).then(function (response) {
      const streamed = (response.headers.get("Content-Type") || "").indexOf("application/x-ndjson") === 0;
      if (!streamed) {
        return response.text().then(function (html) { return { ok: response.ok, html: html }; });
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      let result = { ok: false, html: '<p class="errornote">The answer stopped before it was complete.</p>' };
      function handle(line) {
        if (!line.trim()) return;
        const event = JSON.parse(line);
        if (event.delta !== undefined) onDelta(event.delta);
        else if (event.html !== undefined) result = { ok: true, html: event.html };
        else if (event.error !== undefined) result = { ok: false, html: event.error };
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            handle(buffered);
            return result;
          }
          buffered += decoder.decode(chunk.value, { stream: true });
          const lines = buffered.split("\n");
          buffered = lines.pop();
          lines.forEach(handle);
          return pump();
        });
      }
      return pump();
    });
  }

  // A card that fills with the answer's text while it is generated; replaced by the real one.
  function draftCard(questionText) {
    const draft = fromHtml(
      '<article class="card answer draft" aria-busy="true"><header><p class="question"></p></header>' +
      '<div class="text"><p></p></div></article>'
    );
    draft.querySelector(".question").textContent = questionText;
    return draft;
  }

  function fromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function setUpAsking() {
    const form = document.getElementById("ask-form");
    if (!form) return;
    const question = form.querySelector("textarea");
    const button = document.getElementById("ask-button");
    const working = document.getElementById("working");
    const seconds = document.getElementById("working-seconds");
    const error = document.getElementById("ask-error");
    const answers = document.getElementById("answers");

    question.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled || !question.value.trim()) return;
      const started = Date.now();
      button.disabled = true;
      button.textContent = "Asking…";
      error.innerHTML = "";
      seconds.textContent = "0";
      working.hidden = false;
      const timer = setInterval(function () {
        seconds.textContent = String(Math.round((Date.now() - started) / 1000));
      }, 500);
      let draft = null;
      ask(form, function (delta) {
        if (!draft) {
          draft = draftCard(question.value.trim());
          answers.prepend(draft);
          working.hidden = true;
        }
        draft.querySelector(".text p").textContent += delta;
      })
        .then(function (result) {
          if (draft) draft.remove();
          if (result.ok) {
            answers.prepend(fromHtml(result.html));
            question.value = "";
            const hint = document.getElementById("empty-hint");
            if (hint) hint.remove();
            document.getElementById("clear-form").hidden = false;
          } else {
            error.innerHTML = result.html;
          }
        })
        .catch(function () {
          if (draft) draft.remove();
          error.innerHTML = '<p class="errornote">The server could not be reached. Try again.</p>';
        })
        .finally(function () {
          clearInterval(timer);
          working.hidden = true;
          button.disabled = false;
          button.textContent = "Ask";
          question.focus();
        });
    });
  }

  function setUpVoting() {
    document.addEventListener("submit", function (event) {
      const form = event.target;
      if (!form.classList.contains("vote")) return;
      event.preventDefault();
      const card = form.closest(".answer");
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      post(form, event.submitter).then(function (result) {
        if (result.ok) card.replaceWith(fromHtml(result.html));
        else form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpAsking();
    setUpVoting();
  });
})();
