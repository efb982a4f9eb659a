// Start Swagger UI on /docs. Kept out of the page so that the page has no inline script.
"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The hub's spec is fetched from the hub itself; no validator badge calls out.
    validatorUrl: null,
    persistAuthorization: false,
  });
});
