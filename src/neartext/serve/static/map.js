// Draws a neartext map (points, group colours, labels placed without overlap, an optional
// query) on a canvas, with hover text (the point's text, or a chosen field and the text).
// Used by the offline HTML maps and by the service's map view. No dependencies.
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

  const placed = [];  // label boxes drawn (canvas pixels), for tests and callers

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
    placed.length = 0;
    for (const l of data.labels || []) {
      // at the group's centre, or the nearest free spot around it inside the canvas (a leader
      // line back to the centre); a label with no free spot is left to the legend
      const w = ctx.measureText(l.name).width + 8, h = 16, ax = X(l.x), ay = Y(l.y);
      let spot = null;
      for (let ring = 0; ring <= 12 && !spot; ring++) {
        for (let a = 0; a < (ring ? 16 : 1) && !spot; a++) {
          const t = 2 * Math.PI * a / 16;
          const cx = ax + ring * h * 1.6 * Math.cos(t), cy = ay + ring * h * Math.sin(t);
          const box = {x0: cx - w / 2, y0: cy - h / 2, x1: cx + w / 2, y1: cy + h / 2};
          const inside = box.x0 >= 2 && box.y0 >= 2 && box.x1 <= canvas.width - 2 &&
                         box.y1 <= canvas.height - 2;
          if (inside && !placed.some((o) => box.x0 < o.x1 && o.x0 < box.x1 &&
                                            box.y0 < o.y1 && o.y0 < box.y1)) {
            spot = box;
          }
        }
      }
      if (!spot) continue;
      const cx = (spot.x0 + spot.x1) / 2, cy = (spot.y0 + spot.y1) / 2;
      if (cx !== ax || cy !== ay) {
        ctx.strokeStyle = "#555"; ctx.lineWidth = 0.7;
        ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(cx, cy); ctx.stroke();
      }
      ctx.fillStyle = "rgba(255,255,255,0.85)";
      ctx.fillRect(spot.x0, spot.y0, w, h);
      ctx.fillStyle = "#222";
      ctx.fillText(l.name, cx, cy + 4);
      placed.push({name: l.name, ...spot});
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
      tip.textContent = best[4] || best[3];
      tip.style.left = (ev.clientX + 12) + "px";
      tip.style.top = (ev.clientY + 12) + "px";
      tip.style.display = "block";
    };
    canvas.onmouseleave = () => { tip.style.display = "none"; };
  }
  // where a point is drawn, in canvas pixels
  const at = (p) => [X(p[0]), Y(p[1])];
  return { repaint: paint, labels: placed, at: at };
}
