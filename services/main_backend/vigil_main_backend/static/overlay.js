// Drawing over the video: face box, eye contours and head-pose axes from the fatigue reply,
// the emotion label at the face. Coordinates in the reply are pixels of the frame that was sent;
// `scale` maps them onto the view canvas.

function rotation(pitch, yaw, roll) {
  // R = Rz(roll) · Ry(yaw) · Rx(pitch), camera axes (x right, y down, z into the scene): the
  // convention of vigil_fatigue.geometry.HeadPose.
  const [p, y, r] = [pitch, yaw, roll].map((d) => (d * Math.PI) / 180);
  const rx = [[1, 0, 0], [0, Math.cos(p), -Math.sin(p)], [0, Math.sin(p), Math.cos(p)]];
  const ry = [[Math.cos(y), 0, Math.sin(y)], [0, 1, 0], [-Math.sin(y), 0, Math.cos(y)]];
  const rz = [[Math.cos(r), -Math.sin(r), 0], [Math.sin(r), Math.cos(r), 0], [0, 0, 1]];
  const mul = (a, b) => a.map((row) => b[0].map((_, j) => row.reduce((sum, v, k) => sum + v * b[k][j], 0)));
  return mul(rz, mul(ry, rx));
}

function drawAxes(ctx, cx, cy, length, pose) {
  const m = rotation(pose.pitch, pose.yaw, pose.roll);
  // face right (x), face down (y), face forward = toward the camera (-z)
  const axes = [
    [[m[0][0], m[1][0]], "#ff5d5d"],
    [[m[0][1], m[1][1]], "#3ddc84"],
    [[-m[0][2], -m[1][2]], "#4cc2ff"],
  ];
  ctx.lineWidth = 3;
  for (const [[dx, dy], color] of axes) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(cx, cy);
    ctx.lineTo(cx + dx * length, cy + dy * length);
    ctx.stroke();
  }
}

function label(ctx, text, x, y, color) {
  ctx.font = "600 13px system-ui, sans-serif";
  const w = ctx.measureText(text).width + 10;
  ctx.fillStyle = "rgba(8, 12, 18, 0.75)";
  ctx.fillRect(x, y - 17, w, 18);
  ctx.fillStyle = color;
  ctx.textAlign = "left";
  ctx.fillText(text, x + 5, y - 4);
}

export function drawOverlay(ctx, scale, fatigue, emotion) {
  if (fatigue && fatigue.face_detected && fatigue.face_box) {
    const b = fatigue.face_box;
    const x = b.x * scale;
    const y = b.y * scale;
    const w = b.width * scale;
    const h = b.height * scale;
    const closed = fatigue.eyes_closed === true;
    const color = closed ? "#ff5d5d" : "#3ddc84";
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.strokeRect(x, y, w, h);
    label(ctx, closed ? "eyes closed" : "eyes open", x, y, color);
    const contours = fatigue.eye_contours; // {left: [[x, y], ...], right: [...]} when the service sends them
    if (contours && typeof contours === "object") {
      ctx.strokeStyle = "#ffe066";
      ctx.lineWidth = 1.5;
      for (const points of Object.values(contours)) {
        if (!Array.isArray(points) || points.length < 3) continue;
        ctx.beginPath();
        points.forEach(([px, py], i) => (i ? ctx.lineTo(px * scale, py * scale) : ctx.moveTo(px * scale, py * scale)));
        ctx.closePath();
        ctx.stroke();
      }
    }
    if (fatigue.head_pose) drawAxes(ctx, x + w / 2, y + h / 2, Math.min(w, h) * 0.45, fatigue.head_pose);
  }
  if (emotion && Array.isArray(emotion.faces) && emotion.faces.length) {
    const face = emotion.faces[emotion.primary_face || 0];
    if (face && face.box) {
      const text = `${face.label} ${(face.confidence * 100).toFixed(0)}%`;
      label(ctx, text, face.box.x * scale, (face.box.y + face.box.height) * scale + 20, "#4cc2ff");
    }
  }
}
