// Draws a neartext map (points, group colours, labels, an optional query) on a canvas, with
// hover text. Used by the offline HTML maps and by the service's map view. No dependencies.
"use strict";

function drawMap(canvas, data, tip, legend) {
  const ctx = canvas.getContext("2d");
  const pts = data.points;
  const pad = 24;
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (const p of pts) {
    minX = Math.min(minX, p[0]); maxX = Math.max(maxX, p[0]);
    minY = Math.min(minY, p[1]); maxY = Math.max(maxY, p[1]);
  }
  const sx = (canvas.width - 2 * pad) / ((maxX - minX) || 1);
  const sy = (canvas.height - 2 * pad) / ((maxY - minY) || 1);
  const X = (x) => pad + (x - minX) * sx;
  const Y = (y) => canvas.height - pad - (y - minY) * sy;
  const r = Math.max(1.5, Math.min(5, 600 / Math.sqrt(pts.length + 1)));

  function paint(query) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 0.75;
    for (const p of pts) {
      ctx.fillStyle = data.groups[p[2]].colour;
      ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), r, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const l of data.labels || []) {
      const w = ctx.measureText(l.name).width + 8;
      ctx.fillStyle = "rgba(255,255,255,0.8)";
      ctx.fillRect(X(l.x) - w / 2, Y(l.y) - 9, w, 16);
      ctx.fillStyle = "#222";
      ctx.fillText(l.name, X(l.x), Y(l.y) + 3);
    }
    if (query) {
      ctx.fillStyle = "#000";
      ctx.beginPath(); ctx.arc(X(query.x), Y(query.y), 8, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = "#fff";
      ctx.beginPath(); ctx.arc(X(query.x), Y(query.y), 3, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = "#000";
      ctx.textAlign = "left";
      ctx.fillText("query: " + query.text, X(query.x) + 12, Y(query.y) - 10);
    }
  }
  paint(data.query);

  if (legend) {
    legend.textContent = "";
    for (const g of data.groups) {
      const s = document.createElement("span");
      const dot = document.createElement("b");
      dot.textContent = "● ";
      dot.style.color = g.colour;
      s.appendChild(dot);
      s.appendChild(document.createTextNode(g.name));
      legend.appendChild(s);
    }
  }
  if (tip) {
    canvas.onmousemove = (ev) => {
      const box = canvas.getBoundingClientRect();
      const mx = (ev.clientX - box.left) * canvas.width / box.width;
      const my = (ev.clientY - box.top) * canvas.height / box.height;
      let best = null, bestD = 64;
      for (const p of pts) {
        const d = (X(p[0]) - mx) ** 2 + (Y(p[1]) - my) ** 2;
        if (d < bestD) { bestD = d; best = p; }
      }
      if (!best) { tip.style.display = "none"; return; }
      tip.textContent = best[3] + ": " + best[4];
      tip.style.left = (ev.clientX + 12) + "px";
      tip.style.top = (ev.clientY + 12) + "px";
      tip.style.display = "block";
    };
    canvas.onmouseleave = () => { tip.style.display = "none"; };
  }
  return { repaint: paint };
}
