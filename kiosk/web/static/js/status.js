// The class view's status area and banners: camera, faces, last recognition, outbox, login, LED/buzzer.
// Fed by GET /api/status and the live "status" / "recognition" events (docs/api.md).

import { api, toast } from "./api.js";

const SIGNALS = {
  recognised: "green light + beep (marked)",
  already_marked: "green blinks twice (already marked)",
  unknown: "red light (not on this roster)",
  error: "red blinking (a problem)",
  clear_error: "red blinking stopped",
};
const CAMERA_PROBLEMS = {
  reconnecting: "The camera is failing and being reopened: mark students by hand meanwhile.",
  ended: "The camera stopped sending pictures: mark students by hand.",
  stopped: "The camera is off: mark students by hand.",
  off: "The camera is off: mark students by hand.",
};

let lastRecognition = null;     // {name, confidence, kind, at (ms)} from the "recognition" event

function setText(id, text) { document.getElementById(id).textContent = text; }

function ago(seconds) {
  if (seconds == null) return "";
  return seconds < 60 ? `${Math.round(seconds)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function cameraText(cam) {
  if (cam.error) return `${cam.state}: ${cam.error}`;
  const fps = cam.fps != null ? ` · ${Number(cam.fps).toFixed(1)} fps` : "";
  const done = cam.processedFps != null ? ` (${Number(cam.processedFps).toFixed(1)} analysed)` : "";
  return `${cam.state || "off"}${fps}${done}`;
}

function lastText(st) {
  if (lastRecognition && st.lastRecognitionSecondsAgo != null) {
    const r = lastRecognition;
    const who = r.kind === "recognised" ? `${r.name} ${r.confidence}%` : "someone not on this roster";
    return `${who} · ${ago(st.lastRecognitionSecondsAgo)}`;
  }
  return st.lastRecognitionSecondsAgo != null ? ago(st.lastRecognitionSecondsAgo) : "none yet";
}

function feedbackText(st) {
  const recent = (st.feedback || []).slice(-3).reverse();
  return recent.map((f) => `${SIGNALS[f.signal] || f.signal}, ${ago(f.secondsAgo)}`).join("; ") || "none yet";
}

// A banner asks the teacher to log in again this long before the university login runs out: longer than a
// class, so it shows before one starts rather than in the middle of it.
const LOGIN_WARN_MINUTES = 180;

// When the teacher has to log in again ("in 40 min", "in 30 days"), from the ISO time the kiosk gives: the
// university's refresh token runs out then; the kiosk renews the short-lived access token by itself until then.
function minutesUntil(iso, now = Date.now()) {
  return (new Date(iso).getTime() - now) / 60000;
}

function loginText(iso) {
  if (!iso) return "–";
  const minutes = Math.round(minutesUntil(iso));
  if (minutes <= 0) return "now: log in again";
  if (minutes < 60) return `in ${minutes} min`;
  if (minutes < 48 * 60) return `in ${Math.round(minutes / 60)} h`;
  return `in ${Math.round(minutes / 1440)} days`;
}

function banner(text, kind = "warn", link = null) {
  const p = document.createElement("p");
  p.className = `banner ${kind}`;
  p.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link.href;
    a.textContent = link.text;
    p.append(" ", a);
  }
  return p;
}

function banners(st) {
  const out = [];
  if (!st.teacher) out.push(banner("Your login has expired.", "bad", { href: "/login", text: "Log in again" }));
  if (st.loginNeeded) {
    out.push(banner("The university no longer accepts your login: marks wait until you log in again.", "bad",
      { href: "/login?again=1", text: "Log in again" }));
  }
  if (st.teacher && !st.loginNeeded && st.loginExpiresAt && minutesUntil(st.loginExpiresAt) <= LOGIN_WARN_MINUTES) {
    out.push(banner(`Your university login runs out ${loginText(st.loginExpiresAt)}: log in again before then `
      + "so the camera keeps recording.", "warn", { href: "/login?again=1", text: "Log in again" }));
  }
  if (!st.outboxHealthy) {
    out.push(banner(`The university API is not taking marks right now: ${st.pendingPosts} waiting, `
      + "sent automatically when it answers again.", "bad"));
  }
  const cam = st.camera || {};
  if (st.classRunning && CAMERA_PROBLEMS[cam.state]) out.push(banner(CAMERA_PROBLEMS[cam.state]));
  if (st.clockWarning) out.push(banner(st.clockWarning));
  if ((st.deadLetters || []).length) {
    out.push(banner(`${st.deadLetters.length} mark(s) were refused by the university: see Kiosk status.`, "bad"));
  }
  return out;
}

export function showStatus(st) {
  const cam = st.camera || {};
  setText("st-camera", cameraText(cam));
  setText("st-faces", st.facesSeen ?? "–");
  setText("st-last", lastText(st));
  setText("st-pending", st.outboxHealthy ? `${st.pendingPosts}` : `${st.pendingPosts} (the university API is not taking them yet)`);
  setText("st-login", loginText(st.loginExpiresAt));
  setText("st-feedback", feedbackText(st));
  const fps = cam.fps != null ? ` ${Number(cam.fps).toFixed(0)} fps` : "";
  const faces = st.facesSeen ? ` · ${st.facesSeen} faces` : "";
  const waiting = st.pendingPosts ? ` · ${st.pendingPosts} waiting` : "";
  setText("st-summary", `camera ${cam.state || "off"}${fps}${faces}${waiting}`);
  document.getElementById("banners").replaceChildren(...banners(st));
  document.getElementById("st-dead").replaceChildren(...(st.deadLetters || []).map(deadLetterItem));
}

// One refused mark with a "Send again" button (POST /api/outbox/retry); the next outbox event removes it.
function deadLetterItem(d) {
  const li = document.createElement("li");
  li.textContent = `Refused: ${d.userId} (${d.reason}) `;
  const again = document.createElement("button");
  again.type = "button";
  again.textContent = "Send again";
  again.addEventListener("click", async () => {
    again.disabled = true;
    try {
      await api("POST", "/api/outbox/retry", { classId: d.classId, userId: d.userId });
      toast("The mark was queued again.");
    } catch (error) {
      toast(error.message);
      again.disabled = false;
    }
  });
  li.append(again);
  return li;
}

// A "recognition" event: remember who (the name from the roster) for the "Last recognition" line.
export function noteRecognition(event, nameOf) {
  lastRecognition = { name: nameOf(event.userId) || event.userId, confidence: event.confidence, kind: event.kind };
}
