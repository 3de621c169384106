// The agent console's script: live updates of the call page (server-sent events, and the
// call's summary for the speech collected between verdicts), its claim and enrollment
// forms, its recordings' players once the call has ended, the calls list's refresh and the
// speakers page's confirmed actions. Every request
// goes to /console/api/..., the service's own /v1 routes, with the session's CSRF token.
"use strict";

const API = "/console/api";
const REFRESH_MS = 2000;

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "x-csrf-token": csrfToken() } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(data && data.detail ? data.detail : `HTTP ${response.status}`);
  }
  return data;
}

function announce(text) {
  const announcer = document.getElementById("announcer");
  if (announcer) announcer.textContent = text;
}

function fixed(value) {
  return typeof value === "number" ? value.toFixed(1) : "";
}

// --- The call page ------------------------------------------------------------------------

function field(card, name) {
  return card.querySelector(`[data-field="${name}"]`);
}

function cardFor(root, rawId) {
  for (const card of root.querySelectorAll(".participant")) {
    if (card.dataset.rawId === rawId) return card;
  }
  const card = document.getElementById("participant-template").content.firstElementChild.cloneNode(true);
  card.dataset.rawId = rawId;
  card.setAttribute("aria-label", `Participant ${rawId}`);
  field(card, "raw_id").textContent = rawId;
  root.appendChild(card);
  bindForms(root, card);
  const empty = document.querySelector('[data-field="empty"]');
  if (empty) empty.hidden = true;
  return card;
}

function showProgress(root, card, seconds) {
  const final = Number(root.dataset.finalSeconds);
  const bar = field(card, "progress");
  bar.value = Math.min(seconds, final);
  field(card, "progress_text").textContent = `${seconds.toFixed(1)} s of ${final} s`;
}

function showVerdict(card, verdict) {
  const decision = field(card, "decision");
  const changed = decision.dataset.decision !== verdict.decision;
  decision.dataset.decision = verdict.decision;
  decision.textContent = verdict.decision;
  field(card, "score").textContent =
    verdict.score === null
      ? verdict.detail || ""
      : `score ${fixed(verdict.score)}, threshold ${fixed(verdict.threshold)}`;
  if (changed) announce(`${card.dataset.rawId}: ${verdict.decision}`);
}

function addHistory(card, verdict) {
  const body = field(card, "history");
  if (body.querySelector(`[data-verdict-id="${verdict.verdict_id}"]`)) return;
  const row = document.getElementById("verdict-template").content.firstElementChild.cloneNode(true);
  row.dataset.verdictId = verdict.verdict_id;
  const time = row.querySelector('[data-cell="created_at"]');
  time.dateTime = verdict.created_at;
  time.textContent = verdict.created_at.slice(11, 19);
  const chip = row.querySelector('[data-cell="decision"] span');
  chip.dataset.decision = verdict.decision;
  chip.textContent = verdict.decision;
  for (const name of ["score", "threshold", "speech_seconds"]) {
    row.querySelector(`[data-cell="${name}"]`).textContent = fixed(verdict[name]);
  }
  body.appendChild(row);
}

function showParticipant(root, participant) {
  const card = cardFor(root, participant.participant_raw_id);
  const claim = participant.claim;
  field(card, "claim").textContent = claim ? claim.speaker_id : "none";
  const claimButton = field(card, "claim_button");
  if (claimButton) claimButton.textContent = claim ? "Change claim" : "Set claim";
  const enrollment = participant.enrollment;
  field(card, "enrollment").textContent = enrollment
    ? `${enrollment.speaker_id}: ${enrollment.status}, ${fixed(enrollment.enrolled_speech_seconds)} s enrolled`
    : "none";
  showProgress(root, card, participant.net_speech_seconds);
  if (participant.latest_verdict) showVerdict(card, participant.latest_verdict);
}

function showCall(root, call) {
  document.querySelector('[data-field="call_status"]').textContent = call.status;
  for (const participant of call.participants) showParticipant(root, participant);
  if (call.status === "ENDED") {
    document.querySelector('[data-field="live"]').textContent = "";
    showRecordings(root);
  }
}

// Whether a participant was recorded is the server's to say, once the call has ended: take
// the recordings' part of the page as it is rendered now (it may not know of the end yet).
async function showRecordings(root, tries = 5) {
  if (root.dataset.recordings !== "on") return; // not an admin's page, or shown already
  root.dataset.recordings = "shown";
  let fresh = [];
  try {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (response.ok) {
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      fresh = page.querySelectorAll("#call .participant");
    }
  } catch (failure) {
    announce(`Could not show the recordings: ${failure.message}`);
  }
  const shown = [...fresh].filter((card) => field(card, "recording")?.hidden === false);
  if (shown.length === 0) {
    root.dataset.recordings = "on";
    if (tries > 1) setTimeout(() => showRecordings(root, tries - 1), REFRESH_MS);
    return;
  }
  for (const card of shown) {
    field(cardFor(root, card.dataset.rawId), "recording").replaceWith(field(card, "recording"));
  }
}

// A player whose audio did not load (still being written, or gone) says so in words.
function explainPlayers(root) {
  root.addEventListener(
    "error",
    (event) => {
      if (event.target.tagName !== "AUDIO") return;
      const error = field(event.target.closest(".recording"), "recording_error");
      error.textContent = "The recording could not be loaded; reload the page to try again.";
      error.hidden = false;
    },
    true, // media errors do not bubble
  );
}

function bindForms(root, card) {
  for (const form of card.querySelectorAll("form[data-action]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = field(card, "error");
      error.hidden = true;
      const speakerId = form.elements.speaker_id.value.trim();
      const rawId = encodeURIComponent(card.dataset.rawId);
      const path = `/calls/${encodeURIComponent(root.dataset.callId)}/participants/${rawId}`;
      try {
        const participant =
          form.dataset.action === "claim"
            ? await api("PUT", `${path}/claim`, { speaker_id: speakerId })
            : await api("POST", `${path}/enroll`, { speaker_id: speakerId });
        showParticipant(root, participant);
        announce(form.dataset.action === "claim" ? `Claim set: ${speakerId}` : `Enrollment started: ${speakerId}`);
      } catch (failure) {
        error.textContent = failure.message;
        error.hidden = false;
      }
    });
  }
}

function followCall(root) {
  const callPath = `/calls/${encodeURIComponent(root.dataset.callId)}`;
  for (const card of root.querySelectorAll(".participant")) bindForms(root, card);
  explainPlayers(root);
  const events = new EventSource(`${API}${callPath}/events`);
  events.addEventListener("participant.joined", (event) => showParticipant(root, JSON.parse(event.data)));
  events.addEventListener("verdict.changed", (event) => {
    const verdict = JSON.parse(event.data);
    const card = cardFor(root, verdict.participant_raw_id);
    showVerdict(card, verdict);
    addHistory(card, verdict);
    showProgress(root, card, Math.max(verdict.speech_seconds, field(card, "progress").value));
  });
  events.addEventListener("enrollment.changed", () => refresh());
  events.addEventListener("call.started", (event) => showCall(root, JSON.parse(event.data)));
  events.addEventListener("call.ended", (event) => {
    showCall(root, JSON.parse(event.data));
    events.close();
  });
  // Events carry verdicts; the speech collected between them comes from the summary.
  let timer = null;
  async function refresh() {
    try {
      const call = await api("GET", callPath);
      showCall(root, call);
      if (call.status === "ENDED" && timer !== null) clearInterval(timer);
    } catch (failure) {
      announce(`Could not refresh the call: ${failure.message}`);
    }
  }
  timer = setInterval(refresh, REFRESH_MS);
}

// --- The calls list -----------------------------------------------------------------------

function refreshCalls(table) {
  setInterval(async () => {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("#calls tbody");
    if (fresh) table.tBodies[0].replaceWith(fresh);
  }, REFRESH_MS);
}

// --- The speakers page --------------------------------------------------------------------

function confirmActions() {
  const dialog = document.getElementById("confirm");
  const error = document.getElementById("speaker-error");
  let pending = null;
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", () => {
      const speaker = button.dataset.speaker;
      pending = { action: button.dataset.confirm, speaker, button };
      document.getElementById("confirm-text").textContent =
        pending.action === "delete"
          ? `Delete speaker ${speaker}: their voiceprint and verdicts are removed for good.`
          : `Opt speaker ${speaker} out: their voiceprint is deleted and enrollment refused from now on.`;
      document.getElementById("confirm-button").textContent =
        pending.action === "delete" ? "Delete" : "Opt out";
      dialog.showModal();
    });
  }
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "confirm" || pending === null) {
      if (pending) pending.button.focus();
      return;
    }
    const path = `/speakers/${encodeURIComponent(pending.speaker)}`;
    try {
      if (pending.action === "delete") await api("DELETE", path);
      else await api("POST", `${path}/opt-out`);
      location.reload();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const call = document.getElementById("call");
  if (call) followCall(call);
  const calls = document.querySelector('table[data-refresh="calls"]');
  if (calls) refreshCalls(calls);
  if (document.getElementById("confirm")) confirmActions();
});
