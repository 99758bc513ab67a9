// Applies the chosen light or dark theme before the page is drawn (no flash).
(function () {
  try {
    var theme = localStorage.getItem("aq-theme");
    if (theme === "dark" || theme === "light") {
      document.documentElement.dataset.theme = theme;
    }
  } catch (e) { /* storage refused: follow the system */ }
})();
