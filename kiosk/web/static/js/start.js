import { api, loadMe, logout, showError } from "./api.js";

const form = document.getElementById("start-form");
const errorBox = document.getElementById("start-error");
const hint = document.getElementById("start-hint");
const moduleSelect = document.getElementById("module");
const slotSelect = document.getElementById("slot");
const weekSelect = document.getElementById("week");
const startButton = document.getElementById("start-button");
const MAX_PROBE = 6;

function option(value, text, selected = false) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = text;
  el.selected = selected;
  return el;
}

function teachingType() { return Number(form.querySelector("input[name=teachingType]:checked").value); }
function setTeachingType(value) { document.getElementById(`type-${value}`).checked = true; }

function slotText(slot) {
  const when = slot.runningNow ? "Now" : slot.startsSoon ? "Soon" : null;
  return [when, `${slot.dayOfWeek.slice(0, 3)} ${slot.time}`, slot.own ? "you" : slot.user].filter(Boolean).join(" · ");
}

// One line saying what Start will start, since phone selects cut long names short.
const moduleNames = new Map();       // module id (text) -> name
const slotsByGuid = new Map();       // lessonGuid -> slot JSON

function updateSummary() {
  const slot = slotsByGuid.get(slotSelect.value);
  const week = weekSelect.selectedOptions[0]?.textContent.split(" · ")[0];
  const type = teachingType() === 1 ? "seminar" : "workshop";
  document.getElementById("start-summary").textContent = slot && week
    ? `${moduleNames.get(moduleSelect.value) || ""} ${type}, ${slot.dayOfWeek} ${slot.time}, ${week}` : "";
}

function showLessons(lessons) {
  slotSelect.replaceChildren();
  weekSelect.replaceChildren();
  const pickedSlot = lessons.preselected.lessonGuid;
  if (!pickedSlot) slotSelect.append(option("", "Choose a slot", true));
  slotsByGuid.clear();
  for (const slot of lessons.slots) {
    slotsByGuid.set(slot.guid, slot);
    slotSelect.append(option(slot.guid, slotText(slot), slot.guid === pickedSlot));
  }
  for (const week of lessons.attClasses) {
    weekSelect.append(option(week.classId, `${week.teachingWeek} · ${week.teachingType}`,
      week.classId === lessons.preselected.classId));
  }
  hint.textContent = pickedSlot ? "The slot running now is chosen: check and start."
    : lessons.slots.length ? "No slot of yours runs now: choose one." : "This module has no slots of this type.";
  updateButton();
}

function updateButton() {
  startButton.disabled = !(slotSelect.value && weekSelect.value);
  updateSummary();
}

async function loadLessons() {
  errorBox.hidden = true;
  startButton.disabled = true;
  hint.textContent = "Loading slots…";
  try {
    showLessons(await api("GET", `/api/modules/${moduleSelect.value}/lessons?teachingType=${teachingType()}`));
  } catch (error) {
    showError(errorBox, error);
  }
}

// Look for a slot running now across the teacher's modules and both teaching types (a few calls at most).
async function findRunning(modules) {
  const probes = [];
  for (const module of modules.slice(0, MAX_PROBE)) {
    for (const type of [1, 2]) {
      probes.push(api("GET", `/api/modules/${module.id}/lessons?teachingType=${type}`)
        .then((lessons) => ({ module, type, lessons })).catch(() => null));
    }
  }
  const found = (await Promise.all(probes)).filter((p) => p && p.lessons.preselected.lessonGuid);
  const own = found.find((p) => p.lessons.slots.some((s) => s.own && s.guid === p.lessons.preselected.lessonGuid));
  return own || found[0] || null;
}

async function init() {
  await loadMe();
  const modules = await api("GET", "/api/modules");
  if (!modules.length) { hint.textContent = "Your account has no modules."; return; }
  for (const m of modules) {
    moduleNames.set(String(m.id), m.name);
    moduleSelect.append(option(m.id, `${m.code} · ${m.name}`));
  }
  const running = await findRunning(modules);
  if (running) {
    moduleSelect.value = String(running.module.id);
    setTeachingType(running.type);
    showLessons(running.lessons);
    startButton.focus();
    return;
  }
  const saved = JSON.parse(localStorage.getItem("kiosk.last") || "null");
  if (saved && modules.some((m) => m.id === saved.moduleId)) {
    moduleSelect.value = String(saved.moduleId);
    setTeachingType(saved.teachingType);
  }
  await loadLessons();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  startButton.disabled = true;
  errorBox.hidden = true;
  const body = { lessonGuid: slotSelect.value, classId: Number(weekSelect.value),
                 moduleId: Number(moduleSelect.value), teachingType: teachingType() };
  try {
    await api("POST", "/api/session", body);
    localStorage.setItem("kiosk.last", JSON.stringify({ moduleId: body.moduleId, teachingType: body.teachingType }));
    location.assign("/class");
  } catch (error) {
    if (error.status === 409) { location.assign("/class"); return; }
    showError(errorBox, error);
    updateButton();
  }
});
moduleSelect.addEventListener("change", loadLessons);
for (const radio of form.querySelectorAll("input[name=teachingType]")) radio.addEventListener("change", loadLessons);
slotSelect.addEventListener("change", updateButton);
weekSelect.addEventListener("change", updateButton);
document.getElementById("logout").addEventListener("click", logout);
document.getElementById("class-ended").hidden = new URLSearchParams(location.search).get("classEnded") !== "1";
init().catch((error) => showError(errorBox, error));
