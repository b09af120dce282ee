import { api, setToken, showError } from "./api.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const takeover = document.getElementById("takeover");
const button = document.getElementById("login-button");

async function logIn(takeOver) {
  errorBox.hidden = true;
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) { showError(errorBox, "Enter your username and password."); return; }
  button.disabled = true;
  try {
    const me = await api("POST", "/api/login", { username, password, takeover: takeOver });
    setToken(me.csrfToken);
    location.assign(me.classRunning ? "/class" : "/start");
  } catch (error) {
    if (error.status === 409 && error.body.takeover) {
      document.getElementById("takeover-text").textContent =
        `Teacher ${error.body.teacher} is running a class: take over? Their class ends and its marks are sent first.`;
      takeover.hidden = false;
      document.getElementById("takeover-button").focus();
    } else {
      showError(errorBox, error);
      form.password.select();
    }
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); logIn(false); });
document.getElementById("takeover-button").addEventListener("click", () => logIn(true));
document.getElementById("takeover-cancel").addEventListener("click", () => { takeover.hidden = true; });
document.getElementById("login-ended").hidden = new URLSearchParams(location.search).get("ended") !== "1";
form.username.focus();
