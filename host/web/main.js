// Wires the page together: fills the pickers and the server panel from the API, sends
// messages, and keeps the loaded-models panel fresh while the tab is visible. From a
// static export (no server behind the page) only browser mode runs, on the export's
// catalog.

import { getJson, storeApiKey, storedApiKey, streamEvents } from './api.js';
import { BrowserMode } from './browser-mode.js';
import { Chat } from './chat.js';
import { Picker } from './picker.js';
import { exportedCatalog, readSite } from './static-export.js';
import { showDevice, showLoadedModels, showPlugins, showRouting } from './status.js';

const $ = (id) => document.getElementById(id);

// Idle models change state on the server's timers, so the panel asks again this often.
const LOADED_MODELS_REFRESH_MS = 5000;

const SAMPLING_INPUTS = [
  ['temperature', 'temperature'],
  ['top-p', 'top_p'],
  ['max-tokens', 'max_tokens'],
  ['seed', 'seed'],
];

const connection = $('connection');
const prompt = $('prompt');
const site = await readSite();

const picker = new Picker({
  model: $('model'),
  backend: $('backend'),
  tier: $('tier'),
  adapter: $('adapter'),
  scale: $('adapter-scale'),
  facts: $('model-facts'),
});

// Empty inputs are left out, so the server's defaults apply; anything typed is sent as
// it is and the server's validation speaks for itself.
function samplingFields() {
  const fields = {};
  for (const [id, name] of SAMPLING_INPUTS) {
    const input = $(id);
    if (input.validity.badInput) {
      throw new Error(`${input.labels[0].textContent} must be a number`);
    }
    if (input.value !== '') fields[name] = Number(input.value);
  }
  return fields;
}

const browserMode = new BrowserMode({
  tier: $('browser-tier'),
  progress: $('browser-progress'),
  status: $('browser-status'),
  reasons: $('browser-reasons'),
  device: $('browser-device'),
});

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

// Server mode shows the server's model picker; browser mode its WebGPU tiers.
function showMode() {
  const browser = mode() === 'browser';
  $('browser-section').hidden = !browser;
  $('model-section').hidden = browser;
  $('generation-hint').textContent = browser
    ? "Empty fields use the page engine's defaults: temperature 0.8, top p 0.95, 512 tokens."
    : "Empty fields use the server's defaults.";
  document.body.dataset.mode = mode();
  if (!browser) browserMode.release();
}

for (const input of document.querySelectorAll('input[name="mode"]')) {
  input.addEventListener('change', showMode);
}

const chat = new Chat({
  list: $('messages'),
  status: $('chat-status'),
  errorBox: $('chat-error'),
  // The server picker's model, tier and adapter are the server's: the page's engine
  // runs the browser tier it loaded and takes the sampling fields alone.
  fields: () => (mode() === 'browser' ? samplingFields() : { ...picker.fields(), ...samplingFields() }),
  onBusy: (busy) => {
    $('send').disabled = busy;
    $('stop').disabled = !busy;
    if (!busy && !site.static_export) refreshLoadedModels();
  },
  source: (body, signal) =>
    mode() === 'browser'
      ? browserMode.stream(body, signal)
      : streamEvents('/v1/chat/completions', body, signal),
});

function showConnection(error, version) {
  connection.classList.toggle('failed', Boolean(error));
  connection.textContent = error ? error.message : `Connected to hearth ${version}`;
}

async function refreshLoadedModels() {
  try {
    showLoadedModels($('loaded-models'), await getJson('/api/ps'));
  } catch (error) {
    showConnection(error);
  }
}

async function refreshAll() {
  try {
    const [version, models, tags, profile, plugins, ps] = await Promise.all(
      ['/api/version', '/v1/models', '/api/tags', '/api/profile', '/api/plugins', '/api/ps'].map(getJson),
    );
    picker.fill({ models, tags, profile, plugins });
    const headers = storedApiKey() ? { Authorization: `Bearer ${storedApiKey()}` } : {};
    browserMode.fill({
      catalog: profile.catalog,
      available: models.data.filter((model) => model.installed).map((model) => model.id),
      source: {
        modelUrl: (id) => `/api/gguf/${encodeURIComponent(id)}`,
        architectures: '/api/architectures',
        headers: () => headers,
        missing: 'nothing installed',
      },
    });
    showRouting($('routing'), profile);
    showDevice($('device'), profile.device);
    showPlugins($('plugins'), plugins);
    showLoadedModels($('loaded-models'), ps);
    showConnection(null, version.version);
    document.body.dataset.ready = 'true';
  } catch (error) {
    showConnection(error);
  }
}

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text || chat.busy) return;
  prompt.value = '';
  let sent;
  try {
    sent = await chat.send(text, $('system').value.trim());
  } catch (error) {
    chat.showError(error);
    sent = false;
  }
  // A message that got no answer goes back into the box, to be fixed or sent again.
  if (!sent && !prompt.value) prompt.value = text;
});

prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('composer').requestSubmit();
  }
});

$('stop').addEventListener('click', () => chat.stop());
$('new-chat').addEventListener('click', () => chat.clear());
$('refresh').addEventListener('click', refreshAll);

const keyInput = $('api-key');
keyInput.value = storedApiKey();
function saveApiKey(event) {
  event.preventDefault();
  storeApiKey(keyInput.value.trim());
  refreshAll();
}
keyInput.addEventListener('change', saveApiKey);
$('key-form').addEventListener('submit', saveApiKey);

// A static export: browser mode alone, with the server's parts of the page hidden.
async function startStaticExport() {
  $('server-mode').disabled = true;
  $('browser-mode').checked = true;
  $('mode-note').hidden = false;
  $('server-section').hidden = true;
  $('key-section').hidden = true;
  $('browser-hint').textContent = "The model runs on this browser's WebGPU, its file read from its URL.";
  showMode();
  try {
    browserMode.fill(await exportedCatalog(site));
    connection.textContent = `Static export of hearth ${site.hearth_version}: browser mode only`;
    document.body.dataset.ready = 'true';
  } catch (error) {
    showConnection(error);
  }
}

if (site.static_export) {
  document.body.dataset.site = 'static-export';
  startStaticExport();
} else {
  setInterval(() => {
    if (!document.hidden) refreshLoadedModels();
  }, LOADED_MODELS_REFRESH_MS);
  refreshAll();
}
