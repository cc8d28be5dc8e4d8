// Progressive enhancement of the chat page: ask and vote without reloading, and show that the
// model is working. Without JavaScript the same forms post and redirect.
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
      post(form)
        .then(function (result) {
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
