import { api, hideToast, loadMe, showError, toast } from "./api.js";
import { noteRecognition, showStatus } from "./status.js";

const rosterList = document.getElementById("roster");
const errorBox = document.getElementById("class-error");
const search = document.getElementById("search");
const students = new Map();          // userId -> row JSON (GET /api/session "students")
let session = null;
let undoTimer = null;
let undoSeconds = 5;
const nameOf = (userId) => students.get(userId)?.fullName;

// --- rendering --------------------------------------------------------------------------------
function stateText(s) {
  if (s.source === "camera") return `Present · camera ${s.confidence}%`;
  if (s.source === "manual") return s.present ? "Present · marked by you" : "Absent · marked by you";
  if (s.source === "server") return s.present ? "Present · marked earlier" : "Absent · marked earlier";
  return "No mark yet";
}

function button(text, className, onClick, label, pressed = null) {
  const el = document.createElement("button");
  el.type = "button";
  if (pressed !== null) el.setAttribute("aria-pressed", String(pressed));
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
      button("Present", s.present === true ? "primary" : "", () => mark(s.userId, true), `Mark ${s.fullName} present`,
        s.present === true),
      button("Absent", s.present === false ? "danger" : "", () => mark(s.userId, false), `Mark ${s.fullName} absent`,
        s.present === false),
    );
  }
  if (!s.enrolled) actions.append(button("Enrol", "", () => openEnrol(s), `Enrol ${s.fullName}`));
  li.append(who, actions);
  return li;
}

function shown() { return document.querySelector("input[name=show]:checked").value; }

function matches(s) {
  const show = shown();
  if ((show === "present" && s.present !== true) || (show === "missing" && s.present === true)) return false;
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
  document.getElementById("count-missing").textContent = `(${all.filter((s) => s.present !== true).length})`;
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

function showHeader(snap) {
  const l = snap.lesson || {};
  const title = [l.moduleCode, l.teachingType].filter(Boolean).join(" · ") || `Class ${snap.classId}`;
  document.getElementById("class-title").textContent = title;
  document.title = `${title} · Attendance kiosk`;
  const when = [l.dayOfWeek && l.dayOfWeek.slice(0, 3), l.time].filter(Boolean).join(" ");
  const ends = snap.endsAt ? `ends ${snap.endsAt.slice(11, 16)}` : "";   // the kiosk's timetable zone
  document.getElementById("class-sub").textContent =
    [l.moduleName, when, l.teachingWeek, `class ${snap.classId}`, ends].filter(Boolean).join(" · ");
}

function showSession(snap) {
  session = snap;
  showHeader(snap);
  students.clear();
  for (const s of snap.students) students.set(s.userId, s);
  renderAll();
}

// --- actions ----------------------------------------------------------------------------------
async function run(action) {
  errorBox.hidden = true;
  try { return await action(); } catch (error) { showError(errorBox, error); return null; }
}

const mark = (userId, present) => run(async () => {
  const row = await api("POST", "/api/session/marks", { userId, present });
  updateStudent(row);
  if (row.pendingUndo) {
    toast(`${row.fullName}: ${present ? "present" : "absent"}.`, row.pendingUndo * 1000,
      { label: (left) => `Undo (${left} s)`, run: () => undo(userId) });
  }
});

const undo = (userId) => run(async () => {
  await api("POST", "/api/session/marks/undo", { userId });
  hideToast();
  showSession(await api("GET", "/api/session"));
  toast("Mark undone.");
});

async function undoAll(userIds) {
  await run(async () => {
    const answers = await Promise.all(userIds.map((userId) =>
      api("POST", "/api/session/marks/undo", { userId }).then(() => true, () => false)));
    showSession(await api("GET", "/api/session"));
    const late = answers.filter((ok) => !ok).length;
    toast(late ? `Undone, except ${late} already sent.` : "All undone.");
  });
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  hideToast();
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
}

document.getElementById("absent-remaining").addEventListener("click", async () => {
  const left = [...students.values()].filter((s) => s.source === null && !s.pendingUndo).map((s) => s.userId);
  if (!left.length) { toast("Every student already has a mark."); return; }
  const who = left.length === 1 ? "the 1 student" : `the ${left.length} students`;
  if (!(await confirmDialog(`Mark ${who} without a mark absent?`))) return;
  await run(async () => {
    const result = await api("POST", "/api/session/absent-remaining");
    undoSeconds = result.undoSeconds ?? undoSeconds;
    showSession(await api("GET", "/api/session"));
    toast(`${result.marked} marked absent.`, undoSeconds * 1000,
      { label: (n) => `Undo all (${n} s)`, run: () => undoAll(left) });
  });
});

document.getElementById("end-class").addEventListener("click", async () => {
  if (!(await confirmDialog("End this class? The camera stops and waiting marks are sent now."))) return;
  await run(async () => { await api("DELETE", "/api/session"); location.assign("/start?classEnded=1"); });
});

search.addEventListener("input", renderAll);
for (const radio of document.querySelectorAll("input[name=show]")) radio.addEventListener("change", renderAll);

// --- enrolment --------------------------------------------------------------------------------
let enrolling = null;
let enrolRequests = 0;               // enrolments still waiting for the kiosk's answer
const enrolDialog = document.getElementById("enrol-dialog");
const enrolError = document.getElementById("enrol-error");
const enrolBusy = document.getElementById("enrol-busy");

function openEnrol(s) {
  enrolling = s;
  document.getElementById("enrol-name").textContent = s.fullName;
  document.getElementById("enrol-photos").value = "";
  enrolError.hidden = true;
  if (!enrolRequests) enrolBusy.textContent = "";
  hideToast();                       // the row keeps its own Undo button
  enrolDialog.showModal();
}

// The answer belongs to the student it was asked for: the teacher may have closed the dialog meanwhile (a
// kiosk camera capture takes up to 10 s) and opened another student's enrolment. Then the answer is also
// written in that dialog's status line, since the open dialog covers the toast.
function tellLate(text, ms) {
  toast(text, ms);
  if (enrolDialog.open) enrolBusy.textContent = text;
}

// Both ways to enrol wait while one runs: two answers for one student at once would each send only their own
// new vectors (SetEmbedding replaces), so one of them would be lost.
const enrolButtons = [document.getElementById("enrol-upload"), document.getElementById("enrol-camera")];

async function enrolWith(action, busyText) {
  const who = enrolling;
  const stillOpen = () => enrolling === who && enrolDialog.open;
  enrolError.hidden = true;
  enrolBusy.textContent = busyText;
  for (const button of enrolButtons) button.disabled = true;
  enrolRequests += 1;
  try {
    const result = await action(who);
    const text = `${who.fullName} is enrolled (${result.vectors} face ${result.vectors === 1 ? "vector" : "vectors"}).`;
    if (stillOpen()) { enrolDialog.close(); toast(text); } else tellLate(text);
  } catch (error) {
    if (stillOpen()) showError(enrolError, error);
    else tellLate(`${who.fullName} is not enrolled: ${error.message}`, 8000);
  } finally {
    enrolRequests -= 1;
    if (enrolBusy.textContent === busyText) enrolBusy.textContent = "";
    if (!enrolRequests) for (const button of enrolButtons) button.disabled = false;
  }
}

document.getElementById("enrol-upload").addEventListener("click", () => enrolWith(async (who) => {
  const files = document.getElementById("enrol-photos").files;
  if (!files.length) throw new Error("Choose or take at least one photo.");
  const form = new FormData();
  form.append("userId", who.userId);
  for (const file of files) form.append("image", file);
  return api("POST", "/api/enroll", form, { form: true });
}, "Checking the photos…"));

document.getElementById("enrol-camera").addEventListener("click", () => enrolWith(
  (who) => api("POST", "/api/enroll/capture", { userId: who.userId }),
  "The student should stand alone in front of the kiosk camera and look at it (up to 10 s)…"));

// --- status -----------------------------------------------------------------------------------
let statusPending = null;
function refreshStatus() {
  if (statusPending) return;
  statusPending = setTimeout(async () => {
    statusPending = null;
    try { showStatus(await api("GET", "/api/status")); } catch { /* shown on the next try */ }
  }, 700);
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
      location.assign("/start?classEnded=1");
    }
  });
  source.addEventListener("recognition", (e) => { noteRecognition(JSON.parse(e.data), nameOf); refreshStatus(); });
  for (const name of ["status", "outbox", "enrolled"]) source.addEventListener(name, refreshStatus);
  source.addEventListener("logout", () => { source.close(); location.assign("/login?ended=1"); });
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
