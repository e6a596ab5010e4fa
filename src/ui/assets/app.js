// Poblysh Connectors dashboard: progressive enhancement only (every page and
// form works without it). No dependencies, no build step.
//  - [data-refresh] regions reload their fragment every data-every ms;
//  - <time data-relative> keeps its "5 minutes ago" text current;
//  - a button[data-test] tests the form's values in place, so entered
//    secrets stay in the form.

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function relative(iso) {
  const secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const future = secs < 0;
  const s = Math.abs(secs);
  if (s < 45) return "just now";
  let n, unit;
  if (s < 3600) [n, unit] = [Math.round(s / 60), "minute"];
  else if (s < 86400) [n, unit] = [Math.round(s / 3600), "hour"];
  else if (s < 30 * 86400) [n, unit] = [Math.round(s / 86400), "day"];
  else if (s < 365 * 86400) [n, unit] = [Math.floor(s / (30 * 86400)), "month"];
  else [n, unit] = [Math.floor(s / (365 * 86400)), "year"];
  n = Math.max(1, n);
  const text = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return future ? `in ${text}` : `${text} ago`;
}

function refreshTimes(root = document) {
  for (const t of root.querySelectorAll("time[data-relative]")) {
    t.textContent = relative(t.getAttribute("datetime"));
  }
}

function live(region) {
  const url = region.dataset.refresh;
  const every = Number(region.dataset.every) || 5000;
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    region.classList.add("loading");
    try {
      const res = await fetch(url, { headers: { "X-Poblysh-Refresh": "1" }, credentials: "same-origin" });
      if (res.status === 401) { window.location.assign("/ui/login"); return; }
      if (res.ok) {
        region.innerHTML = await res.text();
        refreshTimes(region);
        region.dataset.refreshed = String(Date.now());
      }
    } catch (e) {
      // Offline for a moment: the next tick tries again.
    } finally {
      busy = false;
      region.classList.remove("loading");
    }
  };
  setInterval(tick, every);
}

function testInPlace(button) {
  button.addEventListener("click", async (event) => {
    const form = button.form;
    if (!form) return;
    event.preventDefault();
    const target = document.getElementById(button.dataset.test);
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "Testing…";
    if (target) target.textContent = "";
    try {
      const res = await fetch(button.formAction, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-CSRF-Token": csrf(), "X-Poblysh-Fragment": "1" },
        credentials: "same-origin",
      });
      const html = await res.text();
      if (res.ok && target) {
        target.innerHTML = html;
        for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
        for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
      } else {
        // The fields need attention: the server sent the whole page with
        // its messages; show them next to the fields, keep what was typed.
        const page = new DOMParser().parseFromString(html, "text/html");
        for (const p of form.querySelectorAll(".field-error")) {
          const sent = page.querySelector(`.field-error[data-field="${p.dataset.field}"]`);
          p.textContent = sent ? sent.textContent : "";
          const input = form.elements.namedItem(p.dataset.field);
          if (input && input.setAttribute) {
            if (p.textContent) input.setAttribute("aria-invalid", "true");
            else input.removeAttribute("aria-invalid");
          }
        }
        const alert = page.querySelector('[data-testid="form-error"]');
        if (target) target.textContent = alert ? alert.textContent : `The test failed (HTTP ${res.status}).`;
      }
    } catch (e) {
      if (target) target.textContent = "The test could not be run; check the connection to the service.";
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
}

refreshTimes();
setInterval(refreshTimes, 30000);
for (const region of document.querySelectorAll("[data-refresh]")) live(region);
for (const button of document.querySelectorAll("button[data-test]")) testInPlace(button);
