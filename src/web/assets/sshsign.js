// sshsign approval pages: passkey registration, login, and decisions with a passkey or a TOTP
// code. No inline script anywhere (the CSP forbids it); everything the page needs is in data-*
// attributes. Every request is same-origin JSON.
"use strict";

const b64url = {
  decode(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  },
  encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (reply.error && reply.error.message) || `HTTP ${response.status}`;
    throw new Error(message);
  }
  return reply;
}

function say(text, kind) {
  const box = document.getElementById("message");
  if (!box) return;
  box.textContent = text;
  box.className = kind || "";
}

function creationOptions(options) {
  const publicKey = structuredClone(options.publicKey);
  publicKey.challenge = b64url.decode(publicKey.challenge);
  publicKey.user.id = b64url.decode(publicKey.user.id);
  for (const cred of publicKey.excludeCredentials || []) cred.id = b64url.decode(cred.id);
  return { publicKey };
}

function requestOptions(options) {
  const publicKey = structuredClone(options.publicKey);
  publicKey.challenge = b64url.decode(publicKey.challenge);
  for (const cred of publicKey.allowCredentials || []) cred.id = b64url.decode(cred.id);
  return { publicKey };
}

function registrationJson(credential) {
  return {
    id: credential.id,
    rawId: b64url.encode(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: b64url.encode(credential.response.clientDataJSON),
      attestationObject: b64url.encode(credential.response.attestationObject),
    },
    extensions: credential.getClientExtensionResults(),
  };
}

function assertionJson(credential) {
  const r = credential.response;
  return {
    id: credential.id,
    rawId: b64url.encode(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: b64url.encode(r.authenticatorData),
      clientDataJSON: b64url.encode(r.clientDataJSON),
      signature: b64url.encode(r.signature),
      userHandle: r.userHandle ? b64url.encode(r.userHandle) : null,
    },
    extensions: credential.getClientExtensionResults(),
  };
}

function busy(buttons, on) {
  for (const button of buttons) button.disabled = on;
}

// Enrollment: /enroll/{token}
function setUpEnrollment(root) {
  const button = document.getElementById("register");
  button.addEventListener("click", async () => {
    busy([button], true);
    try {
      const base = `/enroll/${encodeURIComponent(root.dataset.token)}`;
      const { ceremony, options } = await post(`${base}/options`, {});
      say("Follow your browser's prompt…");
      const credential = await navigator.credentials.create(creationOptions(options));
      const label = document.getElementById("label").value.trim() || "passkey";
      const done = await post(`${base}/finish`, {
        ceremony,
        label,
        credential: registrationJson(credential),
      });
      say(`Passkey "${done.label}" registered (${done.id}). You can close this page.`, "ok");
      button.hidden = true;
    } catch (error) {
      say(`Not registered: ${error.message}`, "error");
      busy([button], false);
    }
  });
}

// Login: /login
function setUpLogin(root) {
  const button = document.getElementById("login");
  button.addEventListener("click", async () => {
    busy([button], true);
    try {
      const { ceremony, options } = await post("/login/options", {});
      say("Follow your browser's prompt…");
      const credential = await navigator.credentials.get(requestOptions(options));
      await post("/login/finish", { ceremony, credential: assertionJson(credential) });
      window.location.assign(root.dataset.next || "/requests");
    } catch (error) {
      say(`Not logged in: ${error.message}`, "error");
      busy([button], false);
    }
  });
}

// A request's page: /approve/{id}
function setUpDecision(root) {
  const base = `/approve/${encodeURIComponent(root.dataset.id)}`;
  const buttons = Array.from(document.querySelectorAll("button[data-decision]"));
  // Who is deciding: says whose passkey or code to ask for; only that proof decides.
  const approver = () => {
    const field = document.getElementById("approver");
    return field ? field.value : null;
  };
  const extra = () => {
    const body = {};
    if (approver()) body.approver = approver();
    const reason = document.getElementById("reason");
    if (reason && reason.value.trim()) body.reason = reason.value.trim();
    const pad = document.getElementById("signature-pad");
    if (pad && pad.dataset.drawn === "true") {
      body.signature_png = pad.toDataURL("image/png").split(",")[1];
    }
    return body;
  };
  const decide = async (button) => {
    const decision = button.dataset.decision;
    const method = button.dataset.method;
    const pad = document.getElementById("signature-pad");
    if (decision === "approved" && pad && pad.dataset.drawn !== "true") {
      say("Draw your signature first.", "error");
      return;
    }
    busy(buttons, true);
    try {
      let body = { ...extra(), decision, method };
      if (method === "passkey") {
        const ask = approver() ? { decision, approver: approver() } : { decision };
        const { ceremony, options } = await post(`${base}/options`, ask);
        say("Follow your browser's prompt…");
        const credential = await navigator.credentials.get(requestOptions(options));
        body = { ...body, ceremony, credential: assertionJson(credential) };
      } else {
        body.code = document.getElementById("totp-code").value.trim();
      }
      const result = await post(`${base}/decide`, body);
      say(`Recorded: ${result.status}.`, "ok");
      window.setTimeout(() => window.location.reload(), 600);
    } catch (error) {
      say(`Not recorded: ${error.message}`, "error");
      busy(buttons, false);
    }
  };
  for (const button of buttons) {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      decide(button);
    });
  }
  setUpSignaturePad();
}

// Reopening a TOTP secret that wrong codes closed: /requests, logged in, with a passkey.
function setUpReopen(root) {
  const button = document.getElementById("reopen-totp");
  button.addEventListener("click", async () => {
    busy([button], true);
    try {
      const base = `/account/totp/${encodeURIComponent(root.dataset.id)}`;
      const { ceremony, options } = await post(`${base}/options`, {});
      say("Follow your browser's prompt…");
      const credential = await navigator.credentials.get(requestOptions(options));
      const done = await post(`${base}/reopen`, { ceremony, credential: assertionJson(credential) });
      say(`TOTP reopened (${done.id}).`, "ok");
      button.hidden = true;
    } catch (error) {
      say(`Not reopened: ${error.message}`, "error");
      busy([button], false);
    }
  });
}

// A drawn signature, where the request asks for one.
function setUpSignaturePad() {
  const pad = document.getElementById("signature-pad");
  if (!pad) return;
  const ink = pad.getContext("2d");
  ink.fillStyle = "#ffffff";
  ink.fillRect(0, 0, pad.width, pad.height);
  ink.lineWidth = 2.5;
  ink.lineCap = "round";
  ink.strokeStyle = "#10243e";
  let drawing = false;
  const at = (event) => {
    const box = pad.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * pad.width) / box.width,
      ((event.clientY - box.top) * pad.height) / box.height,
    ];
  };
  pad.addEventListener("pointerdown", (event) => {
    // Drawing answers an earlier "draw your signature first".
    say("");
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    ink.beginPath();
    ink.moveTo(...at(event));
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ink.lineTo(...at(event));
    ink.stroke();
    pad.dataset.drawn = "true";
  });
  const stop = () => {
    drawing = false;
  };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  const clear = document.getElementById("signature-clear");
  if (clear) {
    clear.addEventListener("click", (event) => {
      event.preventDefault();
      ink.fillStyle = "#ffffff";
      ink.fillRect(0, 0, pad.width, pad.height);
      pad.dataset.drawn = "false";
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-page]");
  if (!root) return;
  if (!window.PublicKeyCredential && root.dataset.page !== "decision") {
    say("This browser does not support passkeys.", "error");
  }
  const setUp = {
    enroll: setUpEnrollment,
    login: setUpLogin,
    decision: setUpDecision,
    reopen: setUpReopen,
  }[root.dataset.page];
  if (setUp) setUp(root);
});
