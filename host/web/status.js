// The server panel: loaded models with their idle state (`/api/ps`, hearth's facts beside
// Ollama's), the default routing decision and the device (`/api/profile`), and the
// plugins (`/api/plugins`).

import { el, formatBytes } from './dom.js';

// How long from now until `ms` (Unix milliseconds), in words.
function inWords(ms) {
  const seconds = Math.max(0, Math.round((ms - Date.now()) / 1000));
  return seconds >= 90 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
}

// What each state means to a person looking at the panel.
const STATE_WORDS = {
  loading: 'loading',
  ready: 'ready',
  busy: 'generating',
  trimmed: 'idle, caches released',
  exited: 'worker exited, reloads on next use',
  unloaded: 'unloading',
};

export function showLoadedModels(list, ps) {
  if (!ps.models.length) {
    list.replaceChildren(el('li', { text: 'No model is loaded.' }));
    return;
  }
  list.replaceChildren(
    ...ps.models.map((model) => {
      const facts = [model.key.backend, formatBytes(model.size)];
      if (model.refs) facts.push(`${model.refs} in use`);
      // Times are set only while the model is idle: when it trims its caches, then unloads.
      if (model.state === 'ready' && model.trim_at_ms) facts.push(`trims in ${inWords(model.trim_at_ms)}`);
      if (model.unload_at_ms) facts.push(`unloads in ${inWords(model.unload_at_ms)}`);
      return el(
        'li',
        { 'data-model': model.name, 'data-state': model.state },
        el('strong', { text: model.name }),
        ' ',
        el('span', { class: `badge ${model.state}`, text: STATE_WORDS[model.state] ?? model.state }),
        el('div', { text: facts.join(' · ') }),
      );
    }),
  );
}

function describeDevices(devices) {
  return devices.map((device) => `${device.name} (${device.kind}, ${formatBytes(device.memory_total_bytes)})`).join(', ');
}

export function showPlugins(list, view) {
  const rows = view.plugins.map((plugin) =>
    el(
      'li',
      {},
      el('strong', { text: `${plugin.name} ${plugin.version}` }),
      ' ',
      el('span', { class: `badge ${plugin.available ? 'ready' : ''}`, text: plugin.available ? 'available' : 'unavailable' }),
      el('div', { text: `Devices: ${describeDevices(plugin.devices) || 'none'}` }),
      el('div', { text: `Features: ${plugin.features.join(', ')}` }),
      el('div', { class: 'hint', text: plugin.reason }),
    ),
  );
  const refused = view.refused.map((failure) =>
    el('li', { class: 'error', text: `Refused ${failure.path}: ${failure.reason}` }),
  );
  const all = [...rows, ...refused];
  list.replaceChildren(...(all.length ? all : [el('li', { text: `No plugin in ${view.folder}.` })]));
}

export function showRouting(box, profile) {
  const { route, catalog } = profile;
  const children = [];
  if (catalog.error) children.push(el('p', { class: 'error', text: `Catalog: ${catalog.error}` }));
  children.push(el('p', { class: 'hint', text: `Catalog: ${catalog.source}` }));
  if (route.error) {
    children.push(el('p', { class: 'error', text: route.error }));
  } else {
    children.push(el('pre', { class: 'summary', text: route.summary.join('\n') }));
    for (const note of route.plan.notes) children.push(el('p', { class: 'hint', text: note }));
  }
  box.replaceChildren(...children);
}

export function showDevice(box, device) {
  const { host } = device;
  const lines = [
    `${host.cpu_brand}, ${host.cpu_cores} cores (${host.os} ${host.arch}${host.apple_silicon ? ', Apple Silicon' : ''})`,
    `RAM: ${formatBytes(host.ram_total_bytes)}, ${formatBytes(host.ram_available_bytes)} available`,
    `CPU features: ${host.cpu_features.join(', ') || 'none listed'}`,
    ...device.backends.map(
      (probe) => `${probe.backend}: ${probe.available ? describeDevices(probe.devices) : `unavailable: ${probe.reason}`}`,
    ),
  ];
  box.replaceChildren(...lines.map((line) => el('p', { class: 'hint', text: line })));
}
