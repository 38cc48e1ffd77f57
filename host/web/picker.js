// The model picker, filled from the catalog as the API reports it: models and whether
// they are installed (`/v1/models`), the backends each installed file runs on
// (`/api/tags`), the tier tables, adapters and default route with its reasons
// (`/api/profile`), and the loaded backends (`/api/plugins`). It turns the choice into
// the request fields hearth reads: `model`, `backend`, `tier` and `adapters`.

import { el, fillSelect } from './dom.js';

export class Picker {
  constructor({ model, backend, tier, adapter, scale, facts }) {
    Object.assign(this, { model, backend, tier, adapter, scale, facts });
    this.catalog = { models: [], tags: [], tiers: [], adapters: [], plan: null, plugins: [] };
    for (const select of [model, backend, tier, adapter]) {
      select.addEventListener('change', () => this.#update());
    }
  }

  fill({ models, tags, profile, plugins }) {
    this.catalog = {
      models: models.data,
      tags: tags.models,
      tiers: profile.catalog.tiers ?? [],
      adapters: profile.catalog.adapters ?? [],
      plan: profile.route.plan ?? null,
      routeError: profile.route.error,
      plugins: plugins.plugins,
    };
    const installed = this.catalog.models.filter((model) => model.installed);
    const missing = this.catalog.models.filter((model) => !model.installed);
    fillSelect(this.model, [
      { value: '', label: 'Automatic (the router chooses)' },
      { group: 'Installed', options: installed.map((model) => ({ value: model.id, label: model.name })) },
      {
        group: 'Not installed',
        options: missing.map((model) => ({ value: model.id, label: model.name, disabled: true })),
      },
    ]);
    fillSelect(this.backend, [
      { value: '', label: 'Automatic' },
      ...this.catalog.plugins.map((plugin) => ({
        value: plugin.id,
        label: plugin.available ? plugin.name : `${plugin.name} (unavailable)`,
        disabled: !plugin.available,
      })),
    ]);
    this.#update();
  }

  // The request fields for the current choice; automatic choices are left out.
  fields() {
    const fields = {};
    if (this.model.value) fields.model = this.model.value;
    if (this.backend.value) fields.backend = this.backend.value;
    // A named model decides its tier: hearth ignores `tier` then.
    if (this.tier.value && !this.model.value) fields.tier = Number(this.tier.value);
    if (this.adapter.value) {
      const adapter = { name: this.adapter.value };
      if (this.scale.value !== '') adapter.scale = Number(this.scale.value);
      fields.adapters = [adapter];
    }
    return fields;
  }

  #update() {
    const { tiers, adapters, plan } = this.catalog;
    const modelId = this.model.value;
    const backend = this.backend.value || plan?.backend_order?.[0]?.backend || '';
    fillSelect(this.tier, [
      { value: '', label: 'Automatic' },
      ...tiers
        .filter((tier) => tier.backend === backend)
        .map((tier) => ({
          value: String(tier.tier),
          label: `Tier ${tier.tier}: ${tier.memory_required} ${tier.memory_kind === 'ram' ? 'RAM' : 'GPU'}`,
        })),
    ]);
    this.tier.disabled = Boolean(modelId);
    fillSelect(this.adapter, [
      { value: '', label: 'None' },
      ...adapters
        .filter((adapter) => !modelId || adapter.base_model === modelId)
        .map((adapter) => ({
          value: adapter.name,
          label: `${adapter.title}${modelId ? '' : ` (on ${adapter.base_model})`}${adapter.installed ? '' : ' (not installed)'}`,
          disabled: !adapter.installed,
        })),
    ]);
    this.scale.disabled = !this.adapter.value;
    this.facts.replaceChildren(...(modelId ? this.#modelFacts(modelId) : this.#routeFacts()));
  }

  #routeFacts() {
    const { plan, routeError } = this.catalog;
    if (!plan) return [el('p', { class: 'error', text: routeError ?? 'No route.' })];
    const facts = [];
    if (plan.recommended) {
      const { backend, tier, reason } = plan.recommended;
      facts.push(el('p', {}, el('strong', { text: `${backend} tier ${tier}: ` }), reason));
    }
    const first = plan.candidates[0];
    facts.push(
      el('p', {
        text: first ? `First to try: ${first.reason}` : 'No installed model fits this device.',
      }),
    );
    return facts;
  }

  #modelFacts(modelId) {
    const { tags, tiers, plan } = this.catalog;
    const tag = tags.find((entry) => entry.model === modelId);
    const inTiers = tiers.filter((tier) => tier.models.includes(modelId));
    const facts = [
      el('p', { text: tag ? `Installed: ${tag.hearth.file}, runs on ${tag.hearth.backends.join(', ')}` : 'Not installed' }),
      el('p', {
        text: inTiers.length
          ? `In tiers: ${inTiers.map((tier) => `${tier.backend} ${tier.tier}`).join(', ')}`
          : 'In no tier table',
      }),
    ];
    const order = plan?.backend_order ?? [];
    if (order.length) {
      facts.push(el('p', { text: `Backends tried in order: ${order.map((choice) => choice.backend).join(', ')}` }));
    }
    return facts;
  }
}
