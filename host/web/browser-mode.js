// Browser mode: the chat runs on the page's own engine (engine/engine.js) on this
// browser's WebGPU, with no hearth backend involved; hearth only serves the files, or
// a static export of the app does (static-export.js), with the models at their URLs.
//
// The model comes from the catalog's WebGPU tier table: the chosen tier (or, on
// Automatic, the one the device profile allows: tier 1 on a software adapter), then
// every smaller tier in turn when a model cannot load, each failure's reason listed.
// Idle management follows the catalog's timeouts: after the soft one the KV cache is
// freed, after the hard one every GPU buffer; the next message loads again, from the
// browser's cache.

import { el, fillSelect, formatBytes } from './dom.js';

const BACKEND = 'webgpu';

export class BrowserMode {
  constructor({ tier, progress, status, reasons, device }) {
    Object.assign(this, { tierSelect: tier, progress, status, reasons, device });
    this.tiers = [];
    this.idle = { soft_s: 120, hard_s: 300, models: {} };
    this.engine = null;
    this.source = null;
    this.loading = null;
    this.timers = [];
  }

  // The WebGPU tiers of `catalog` (its `tiers` and `idle`, as `/api/profile` or a
  // static export gives them) with the models of each that `available` lists, and
  // `source`: where each model's file (`modelUrl(id)`) and the architectures'
  // description (`architectures`) are read from, the request `headers()`, and the
  // word for a tier with no available model (`missing`).
  fill({ catalog, available, source }) {
    const usable = new Set(available);
    this.source = source;
    this.tiers = (catalog.tiers ?? [])
      .filter((tier) => tier.backend === BACKEND)
      .map((tier) => ({ ...tier, available: tier.models.filter((id) => usable.has(id)) }))
      .sort((a, b) => a.tier - b.tier);
    this.idle = catalog.idle ?? this.idle;
    fillSelect(this.tierSelect, [
      { value: '', label: 'Automatic (from this device)' },
      ...this.tiers.map((tier) => ({
        value: String(tier.tier),
        label: `Tier ${tier.tier} · ${tier.memory_required} · ${tier.available.join(', ') || source.missing}`,
        disabled: tier.available.length === 0,
      })),
    ]);
  }

  // The tier to start from: the chosen one, else tier 1 on a software adapter or a
  // browser without WebGPU, else the largest the device's memory hint allows.
  #startTier() {
    if (this.tierSelect.value) return Number(this.tierSelect.value);
    const usable = this.tiers.filter((tier) => tier.available.length);
    if (!usable.length) return 0;
    const memory = (navigator.deviceMemory ?? 4) * 2 ** 30;
    const fits = usable.filter((tier) => tier.memory_required_bytes <= memory);
    return (fits.at(-1) ?? usable[0]).tier;
  }

  // The models to try, in order: the start tier's, then each smaller tier's.
  #candidates(start) {
    return this.tiers
      .filter((tier) => tier.tier <= start)
      .reverse()
      .flatMap((tier) => tier.available.map((model) => ({ model, tier: tier.tier })));
  }

  #note(text) {
    this.status.textContent = text;
  }

  // The engine for the current choice, loaded on first use (and again after idle).
  async #ready() {
    const start = this.#startTier();
    if (this.engine && this.engine.tier <= start && this.engine.chosen === this.tierSelect.value) {
      return this.engine;
    }
    await this.release();
    this.reasons.replaceChildren();
    const { Engine } = await import('./engine/engine.js');
    const candidates = this.#candidates(start);
    if (!candidates.length) throw new Error(`no WebGPU tier of the catalog has a model here (${this.source.missing})`);
    const headers = this.source.headers();
    for (const { model, tier } of candidates) {
      this.#note(`Loading ${model} (tier ${tier})…`);
      try {
        const engine = await Engine.load({
          url: this.source.modelUrl(model),
          architectures: this.source.architectures,
          model,
          headers,
          onProgress: ({ stage, loaded, total }) => this.#progress(model, stage, loaded, total),
        });
        Object.assign(engine, { tier, chosen: this.tierSelect.value });
        this.engine = engine;
        this.#showDevice(engine.profile);
        this.#note(`${model} (tier ${tier}) runs in this browser`);
        this.progress.hidden = true;
        return engine;
      } catch (error) {
        this.reasons.append(el('li', { 'data-model': model, text: `${model} (tier ${tier}) did not load: ${error.message}` }));
      }
    }
    this.progress.hidden = true;
    throw new Error('no WebGPU tier could load here; the reasons are listed under Browser');
  }

  #progress(model, stage, loaded, total) {
    this.progress.hidden = !total;
    if (total) {
      this.progress.max = total;
      this.progress.value = loaded;
    }
    const amount = total ? ` ${formatBytes(loaded)} of ${formatBytes(total)}` : '';
    this.#note(`${model}: ${stage}${amount}`);
  }

  #showDevice(profile) {
    const limit = formatBytes(profile.limits.maxStorageBufferBindingSize);
    this.device.replaceChildren(
      el('p', { text: `${profile.name}${profile.fallback ? ' (fallback adapter)' : ''}` }),
      el('p', { text: `${profile.kernels} kernels · subgroups ${profile.subgroups ? 'yes' : 'no'} · binding limit ${limit}` }),
    );
  }

  // The chat's answer source: OpenAI chunks from the in-page engine.
  async *stream(body, signal) {
    this.#clearTimers();
    const engine = await this.#ready();
    const iterator = await engine.chat.completions.create({ ...body, stream: true, signal });
    try {
      for await (const chunk of iterator) {
        if (chunk.timings?.decode_tokens_per_second) {
          this.#note(`${engine.model} (tier ${engine.tier}): ${chunk.timings.decode_tokens_per_second.toFixed(1)} tok/s`);
        }
        yield chunk;
      }
    } finally {
      this.#armIdle(engine.model);
    }
  }

  #clearTimers() {
    this.timers.forEach(clearTimeout);
    this.timers = [];
  }

  #armIdle(model) {
    this.#clearTimers();
    const idle = this.idle.models?.[model] ?? this.idle;
    this.timers.push(
      setTimeout(() => {
        this.engine?.releaseCache();
        this.#note(`${model} is idle: its KV cache was freed`);
      }, idle.soft_s * 1000),
      setTimeout(() => {
        this.release();
        this.#note(`${model} was unloaded after ${idle.hard_s} s idle; the next message loads it again`);
      }, idle.hard_s * 1000),
    );
  }

  async release() {
    this.#clearTimers();
    const engine = this.engine;
    this.engine = null;
    await engine?.release();
  }
}
