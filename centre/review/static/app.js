// streetwatch review workbench: live updates (server-sent events), keys, mask drawing.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  // -- live: one EventSource per page ------------------------------------------
  function listen(onCase) {
    const source = new EventSource("/events");
    source.addEventListener("case", (e) => onCase(JSON.parse(e.data)));
    source.addEventListener("reload", () => window.location.reload());
    source.addEventListener("hello", () => document.body.classList.add("live"));
    source.onerror = () => document.body.classList.remove("live");
    return source;
  }

  function markPending(change) {
    const pending = document.getElementById("pending");
    if (!pending || pending.dataset.case !== change.case_id) return;
    if (change.version > Number(pending.dataset.version) && change.status === pending.dataset.status) {
      pending.classList.add("done");
      pending.querySelector(".state").textContent = pending.querySelector(".applied-word").textContent;
    }
  }

  if (page === "queue") {
    const seen = new Set();
    const bar = document.getElementById("new-bar");
    const count = document.getElementById("new-count");
    listen((change) => {
      const card = document.getElementById("card-" + change.case_id);
      if (card) {
        // in place: never reshuffle what the reviewer is looking at
        if (change.terminal) {
          card.classList.add("done");
          card.querySelector(".status").textContent = change.status;
        } else if (Number(card.dataset.version) < change.version) {
          htmx.ajax("GET", "/queue/cards/" + encodeURIComponent(change.case_id), {
            target: card, swap: "outerHTML",
          });
        }
        return;
      }
      if (change.terminal || seen.has(change.case_id)) return;
      seen.add(change.case_id);
      count.textContent = String(seen.size);
      bar.hidden = false;
    });
    document.body.addEventListener("htmx:afterSwap", (e) => {
      if (e.detail.target.id === "list" || e.detail.elt.id === "new-bar") {
        seen.clear();
        bar.hidden = true;
      }
    });
    bar.addEventListener("keydown", (e) => { if (e.key === "Enter") bar.click(); });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea")) return;
      if (e.key === "j") {
        const first = document.querySelector("#list .card a.open");
        if (first) window.location.href = first.href;
      }
    });
  }

  if (page === "case") {
    const box = document.querySelector(".case");
    const caseId = box.dataset.case;
    listen((change) => {
      markPending(change);
      if (change.case_id === caseId && change.version > Number(box.dataset.version)) {
        const banner = document.getElementById("applied-banner");
        banner.querySelector("span").textContent = change.status + " v" + change.version;
        banner.hidden = false;
        box.dataset.version = String(change.version);
      }
    });

    // keep the claim while the page is open
    const claim = document.getElementById("claim");
    if (claim && claim.classList.contains("mine")) {
      setInterval(() => {
        fetch("/cases/" + encodeURIComponent(caseId) + "/claim", {
          method: "POST", headers: { "x-csrftoken": csrf },
        });
      }, 60000);
    }

    // one key per verdict
    const form = document.getElementById("verdict");
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
      const key = e.key.toLowerCase();
      if (key === "j") { document.getElementById("next").click(); return; }
      if (!form) return;
      const press = (selector) => { const b = form.querySelector(selector); if (b && !b.disabled) b.click(); };
      if (key === "c") press('button[value="confirm"]');
      else if (key === "s") press('button[value="self_handle"]');
      else if (key === "r") { e.preventDefault(); document.getElementById("reason").focus(); }
      else if (key === "m") { e.preventDefault(); document.getElementById("merged_into").focus(); }
      else if (key === "n") { e.preventDefault(); document.getElementById("note").focus(); }
    });

    // the mask: click points on the snapshot, in fractions of its size
    const img = document.getElementById("snapshot");
    const canvas = document.getElementById("mask-canvas");
    const field = document.getElementById("polygon");
    if (img && canvas && field) {
      const points = [];
      const draw = () => {
        canvas.width = img.clientWidth;
        canvas.height = img.clientHeight;
        const ctx = canvas.getContext("2d");
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        if (!points.length) return;
        ctx.beginPath();
        points.forEach(([x, y], i) => {
          const px = x * canvas.width, py = y * canvas.height;
          if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        });
        ctx.closePath();
        ctx.fillStyle = "rgba(0, 120, 255, 0.3)";
        ctx.strokeStyle = "#06f";
        ctx.lineWidth = 2;
        ctx.fill();
        ctx.stroke();
      };
      canvas.addEventListener("click", (e) => {
        const r = canvas.getBoundingClientRect();
        const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
        const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
        points.push([Number(x.toFixed(4)), Number(y.toFixed(4))]);
        field.value = JSON.stringify(points);
        const suppress = document.getElementById("suppress");
        if (suppress && suppress.value === "") suppress.value = "mask";
        draw();
      });
      document.getElementById("clear-mask").addEventListener("click", () => {
        points.length = 0;
        field.value = "";
        draw();
      });
      if (img.complete) draw(); else img.addEventListener("load", draw);
      window.addEventListener("resize", draw);
    }
  }
})();
