// The index page's upload form: posts the chosen file's raw bytes to POST /scans with the
// bearer token, then opens the model's page. The token is kept in this tab's sessionStorage
// only (gone when the tab closes), never in a cookie, the URL or localStorage.
"use strict";

(() => {
  const TOKEN_KEY = "modelward-token";
  const form = document.getElementById("upload-form");
  const token = document.getElementById("token");
  const file = document.getElementById("file");
  const button = document.getElementById("upload");
  const status = document.getElementById("upload-status");
  if (!form) {
    return;
  }
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, token.value));

  const describe = (body) => {
    const detail = body && body.detail;
    if (typeof detail === "string") {
      return detail;
    }
    return detail === undefined ? "no detail" : JSON.stringify(detail);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) {
      status.textContent = "Choose a file first.";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token.value);
    button.disabled = true;
    status.textContent = `Scanning ${chosen.name}…`;
    try {
      const response = await fetch(`/scans?filename=${encodeURIComponent(chosen.name)}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${token.value}`,
          "Content-Type": "application/octet-stream",
        },
        body: chosen,
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok || !/^[0-9a-f]{64}$/.test(body.sha256 || "")) {
        status.textContent = `Upload failed (HTTP ${response.status}): ${describe(body)}`;
        return;
      }
      window.location.assign(`/ui/models/${body.sha256}`);
    } catch (error) {
      status.textContent = `Upload failed: ${error}`;
    } finally {
      button.disabled = false;
    }
  });
})();
