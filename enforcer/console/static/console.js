// Small progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // A time-range select applies at once; its "Show" button is for keyboards without JS.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const button of document.querySelectorAll(".js-hide")) button.hidden = true;
  // Applying a plan changes what every endpoint enforces: ask once more.
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
});
