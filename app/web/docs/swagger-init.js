// Swagger UI for the service's own API document. The document and every "Try it out" call carry
// the key this tab keeps: the one the examiner's page signed in with, or one given in the form.
const KEY_STORAGE = "radmatch.apiKey";

function withKey(request) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key && !request.headers["X-API-Key"]) request.headers["X-API-Key"] = key;
  return request;
}

function show() {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: withKey,
  });
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = document.getElementById("key");
  if (field.value) sessionStorage.setItem(KEY_STORAGE, field.value.trim());
  field.value = "";
  show();
});
show();
