// The token of a Host started with --token-file: asked once in a form, kept in
// sessionStorage (gone with the tab), sent as "Authorization: Bearer" by api.js.
const TOKEN_KEY = "hersh.token";
let onToken = () => {};

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Called once by app.js: what to do when a token was entered (render the page again).
export function initAuth(handler) {
  onToken = handler;
  const form = document.querySelector("[data-testid=token-form]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = form.querySelector("[data-testid=token-input]");
    const value = input.value.trim();
    if (!value) {
      showError("Enter the token (the content of the Host's --token-file).");
      return;
    }
    setToken(value);
    input.value = "";
    document.getElementById("auth").hidden = true;
    document.getElementById("main").hidden = false;
    onToken();
  });
}

function showError(message) {
  const error = document.querySelector("[data-testid=auth-error]");
  error.textContent = message;
  error.hidden = !message;
}

// A call got a 401. `refused`: a token was sent, so it is the wrong one.
export function authRequired(refused) {
  const auth = document.getElementById("auth");
  const message = "The Host refused this token (401 Unauthorized): check the content of its --token-file.";
  // Calls under way when the form opened also get a 401: they keep the message.
  if (!auth.hidden) {
    if (refused) showError(message);
    return;
  }
  showError(refused ? message : "");
  auth.hidden = false;
  document.getElementById("main").hidden = true;
  auth.querySelector("[data-testid=token-input]").focus();
}
