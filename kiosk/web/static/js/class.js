import { api, loadMe, showError, toast } from "./api.js";

const rosterList = document.getElementById("roster");
const errorBox = document.getElementById("class-error");
const search = document.getElementById("search");
const students = new Map();          // userId -> row JSON (GET /api/session "students")
let session = null;
let undoTimer = null;

// --- rendering --------------------------------------------------------------------------------
function stateText(s) {
  if (s.source === "camera") return `Present · camera ${s.confidence}%`;
  if (s.source === "manual") return s.present ? "Present · marked by you" : "Absent · marked by you";
  if (s.source === "server") return s.present ? "Present · marked earlier" : "Absent · marked earlier";
  return "No mark yet";
}

function button(text, className, onClick, label) {
  const el = document.createElement("button");
  el.type = "button";
  el.textContent = text;
  if (className) el.className = className;
  if (label) el.setAttribute("aria-label", label);
  el.addEventListener("click", onClick);
  return el;
}

function renderRow(s) {
  const li = document.createElement("li");
  li.className = "row" + (s.present === true ? " present" : s.present === false ? " absent" : "");
  li.dataset.userId = s.userId;
  const who = document.createElement("div");
  who.className = "who";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = s.fullName;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${s.userId} · ${stateText(s)}`;
  if (!s.enrolled) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "not enrolled";
    if (s.notEnrolledReason) tag.title = s.notEnrolledReason;
    meta.append(" ", tag);
  }
  who.append(name, meta);
  const actions = document.createElement("div");
  actions.className = "actions";
  if (s.pendingUndo) {
    actions.append(button(`Undo (${Math.ceil(s.pendingUndo)} s)`, "", () => undo(s.userId), `Undo mark for ${s.fullName}`));
  } else {
    actions.append(
      button("Present", s.present === true ? "primary" : "", () => mark(s.userId, true), `Mark ${s.fullName} present`),
      button("Absent", s.present === false ? "danger" : "", () => mark(s.userId, false), `Mark ${s.fullName} absent`),
    );
  }
  if (!s.enrolled) actions.append(button("Enrol", "", () => openEnrol(s), `Enrol ${s.fullName}`));
  li.append(who, actions);
  return li;
}

function matches(s) {
  const q = search.value.trim().toLowerCase();
  return !q || s.fullName.toLowerCase().includes(q) || s.userId.includes(q);
}

function renderAll() {
  const rows = [...students.values()].sort((a, b) => a.fullName.localeCompare(b.fullName));
  const focused = document.activeElement?.closest?.("li")?.dataset.userId;
  rosterList.replaceChildren(...rows.filter(matches).map(renderRow));
  document.getElementById("roster-empty").hidden = rosterList.children.length > 0;
  if (focused) rosterList.querySelector(`li[data-user-id="${CSS.escape(focused)}"] button`)?.focus();
  renderCounts();
  scheduleUndoTick();
}

function renderCounts() {
  const all = [...students.values()];
  document.getElementById("count-present").textContent = all.filter((s) => s.present === true).length;
  document.getElementById("count-enrolled").textContent = all.filter((s) => s.enrolled).length;
  document.getElementById("count-total").textContent = all.length;
}

function updateStudent(s, flash = false) {
  students.set(s.userId, s);
  const old = rosterList.querySelector(`li[data-user-id="${CSS.escape(s.userId)}"]`);
  const hadFocus = old && old.contains(document.activeElement);
  if (old && matches(s)) {
    const fresh = renderRow(s);
    old.replaceWith(fresh);
    if (flash) fresh.classList.add("flash");
    if (hadFocus) fresh.querySelector("button")?.focus();
  } else {
    renderAll();
  }
  renderCounts();
  scheduleUndoTick();
}

// Count undo windows down locally; the server's row arrives over SSE when the mark is sent.
function scheduleUndoTick() {
  if (undoTimer) return;
  if (![...students.values()].some((s) => s.pendingUndo)) return;
  undoTimer = setTimeout(() => {
    undoTimer = null;
    for (const s of students.values()) {
      if (s.pendingUndo) updateStudent({ ...s, pendingUndo: s.pendingUndo > 1 ? s.pendingUndo - 1 : null });
    }
  }, 1000);
}

function showSession(snap) {
  session = snap;
  document.getElementById("class-id").textContent = snap.classId;
  students.clear();
  for (const s of snap.students) students.set(s.userId, s);
  renderAll();
}

// --- actions ----------------------------------------------------------------------------------
async function run(action) {
  errorBox.hidden = true;
  try { return await action(); } catch (error) { showError(errorBox, error); return null; }
}

const mark = (userId, present) => run(async () => updateStudent(await api("POST", "/api/session/marks", { userId, present })));

const undo = (userId) => run(async () => {
  await api("POST", "/api/session/marks/undo", { userId });
  showSession(await api("GET", "/api/session"));
  toast("Mark undone.");
});

function confirmDialog(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
}

document.getElementById("absent-remaining").addEventListener("click", async () => {
  const left = [...students.values()].filter((s) => s.source === null && !s.pendingUndo).length;
  if (!left) { toast("Every student already has a mark."); return; }
  if (!(await confirmDialog(`Mark ${left} students without a mark absent?`))) return;
  await run(async () => {
    const result = await api("POST", "/api/session/absent-remaining");
    showSession(await api("GET", "/api/session"));
    toast(`${result.marked} marked absent. You can undo each for a few seconds.`);
  });
});

document.getElementById("end-class").addEventListener("click", async () => {
  if (!(await confirmDialog("End this class? The camera stops and waiting marks are sent now."))) return;
  await run(async () => { await api("DELETE", "/api/session"); location.assign("/start"); });
});

search.addEventListener("input", renderAll);

// --- enrolment --------------------------------------------------------------------------------
let enrolling = null;
const enrolDialog = document.getElementById("enrol-dialog");
const enrolError = document.getElementById("enrol-error");

function openEnrol(s) {
  enrolling = s;
  document.getElementById("enrol-name").textContent = s.fullName;
  document.getElementById("enrol-photos").value = "";
  enrolError.hidden = true;
  enrolDialog.showModal();
}

async function enrolWith(action, busyButton) {
  enrolError.hidden = true;
  busyButton.disabled = true;
  try {
    await action();
    enrolDialog.close();
    toast(`${enrolling.fullName} is enrolled.`);
  } catch (error) {
    showError(enrolError, error);
  } finally {
    busyButton.disabled = false;
  }
}

document.getElementById("enrol-upload").addEventListener("click", (event) => enrolWith(async () => {
  const files = document.getElementById("enrol-photos").files;
  if (!files.length) throw new Error("Choose or take at least one photo.");
  const form = new FormData();
  form.append("userId", enrolling.userId);
  for (const file of files) form.append("image", file);
  await api("POST", "/api/enroll", form, { form: true });
}, event.currentTarget));

document.getElementById("enrol-camera").addEventListener("click", (event) => enrolWith(async () => {
  toast("Look at the kiosk camera…", 10000);
  await api("POST", "/api/enroll/capture", { userId: enrolling.userId });
}, event.currentTarget));

// --- status -----------------------------------------------------------------------------------
function setText(id, text) { document.getElementById(id).textContent = text; }

function showStatus(st) {
  const cam = st.camera || {};
  setText("st-camera", cam.error ? `${cam.state}: ${cam.error}` : cam.fps != null ? `${cam.state} · ${cam.fps} fps` : cam.state || "off");
  setText("st-faces", st.facesSeen ?? "–");
  setText("st-last", st.lastRecognitionSecondsAgo != null ? `${Math.round(st.lastRecognitionSecondsAgo)} s ago` : "none yet");
  setText("st-pending", st.outboxHealthy ? `${st.pendingPosts}` : `${st.pendingPosts} (the university API is not taking them yet)`);
  setText("st-login", st.loginExpiresAt ? new Date(st.loginExpiresAt).toLocaleTimeString() : "–");
  setText("st-feedback", (st.feedback || []).slice(-3).reverse().map((f) => `${f.signal} ${Math.round(f.secondsAgo)} s ago`).join(", ") || "none");
  const waiting = st.pendingPosts ? ` · ${st.pendingPosts} posts waiting` : "";
  setText("st-summary", `camera ${cam.state || "off"}${cam.fps != null ? ` ${cam.fps} fps` : ""}${waiting}`);
  const warning = document.getElementById("st-warning");
  warning.hidden = !st.clockWarning;
  warning.textContent = st.clockWarning || "";
  const dead = document.getElementById("st-dead");
  dead.replaceChildren(...(st.deadLetters || []).map((d) => {
    const li = document.createElement("li");
    li.textContent = `Refused: ${d.userId} (${d.reason})`;
    return li;
  }));
}

let statusPending = null;
function refreshStatus() {
  if (statusPending) return;
  statusPending = setTimeout(async () => {
    statusPending = null;
    try { showStatus(await api("GET", "/api/status")); } catch { /* shown on the next try */ }
  }, 300);
}

// --- live updates -----------------------------------------------------------------------------
function listen() {
  const source = new EventSource("/api/events");
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    if (!data.session) { location.assign("/start"); return; }
    showSession(data.session);
    showStatus(data.status);
  });
  source.addEventListener("student", (e) => updateStudent(JSON.parse(e.data), true));
  source.addEventListener("session", (e) => {
    const data = JSON.parse(e.data);
    if (data.state === "ended" && session && data.classId === session.classId) {
      source.close();
      location.assign("/start");
    }
  });
  for (const name of ["status", "outbox", "recognition"]) source.addEventListener(name, refreshStatus);
  source.addEventListener("logout", () => { source.close(); location.assign("/login"); });
  source.addEventListener("teacher", () => { source.close(); location.assign("/"); });
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) setTimeout(listen, 3000); };
}

async function init() {
  await loadMe();
  showSession(await api("GET", "/api/session"));
  listen();
  refreshStatus();
  setInterval(refreshStatus, 15000);
}

init().catch((error) => {
  if (error.status === 409) location.assign("/start");
  else showError(errorBox, error);
});
