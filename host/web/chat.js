// The conversation: kept in the page, sent whole with each message to
// `POST /v1/chat/completions` with `stream: true` (or, in browser mode, to the in-page
// engine, which answers in the same chunks), the answer drawn as its deltas arrive.
// Stop aborts the request; hearth (or the engine) stops generating.

import { streamEvents } from './api.js';
import { el } from './dom.js';

export class Chat {
  // `list` shows the messages, `status` announces each answer's start and end to screen
  // readers, `errorBox` shows the last error; `fields()` gives the request's model,
  // sampling and adapter fields; `onBusy(busy)` runs as a request starts and ends;
  // `source(body, signal)`, when given, yields the answer's chunks instead of the server.
  constructor({ list, status, errorBox, fields, onBusy, source }) {
    this.list = list;
    this.status = status;
    this.errorBox = errorBox;
    this.fields = fields;
    this.onBusy = onBusy;
    this.source = source ?? ((body, signal) => streamEvents('/v1/chat/completions', body, signal));
    this.messages = [];
    this.controller = null;
  }

  get busy() {
    return this.controller !== null;
  }

  clear() {
    this.stop();
    this.messages = [];
    this.list.replaceChildren();
    this.showError(null);
  }

  stop() {
    this.controller?.abort();
  }

  showError(error) {
    this.errorBox.hidden = !error;
    this.errorBox.textContent = error ? error.message : '';
  }

  // Sends `text` as the user's next message; resolves when the answer has ended. Returns
  // false when the request failed before any answer, so the caller can give the text back.
  async send(text, systemPrompt) {
    if (this.busy) return true;
    // Read first: a field the page cannot send throws before anything is drawn.
    const fields = this.fields();
    this.showError(null);
    // The conversation this exchange belongs to: New chat during the answer starts another.
    const conversation = this.messages;
    const userMessage = { role: 'user', content: text };
    const userItem = this.#append('user', text);
    const answer = { role: 'assistant', content: '' };
    const answerItem = this.#append('assistant', '');
    const content = answerItem.querySelector('.content');
    const meta = answerItem.querySelector('.meta');
    answerItem.dataset.state = 'streaming';
    answerItem.setAttribute('aria-busy', 'true');

    const system = systemPrompt ? [{ role: 'system', content: systemPrompt }] : [];
    const body = {
      ...fields,
      messages: [...system, ...conversation, userMessage],
      stream: true,
      stream_options: { include_usage: true },
    };
    this.controller = new AbortController();
    this.onBusy(true);
    this.status.textContent = 'Answering…';
    let state = 'done';
    let model = '';
    let finish = '';
    let usage = null;
    try {
      for await (const chunk of this.source(body, this.controller.signal)) {
        model = chunk.model || model;
        usage = chunk.usage || usage;
        const choice = chunk.choices?.[0];
        if (choice?.delta?.content) {
          answer.content += choice.delta.content;
          content.textContent = answer.content;
          this.#scroll();
        }
        finish = choice?.finish_reason || finish;
      }
    } catch (error) {
      if (error.name === 'AbortError') {
        state = 'stopped';
      } else {
        state = 'failed';
        this.showError(error);
      }
    } finally {
      this.controller = null;
      this.onBusy(false);
    }

    answerItem.dataset.state = state;
    answerItem.removeAttribute('aria-busy');
    meta.textContent = describe({ state, model, finish, usage });
    this.status.textContent = state === 'done' ? 'Answer finished' : `Answer ${state}`;
    // A stopped answer stays in the conversation as far as it got, so the next turn
    // continues from what the user saw; an exchange with no answer is not sent again.
    if (answer.content) {
      conversation.push(userMessage, answer);
    } else if (state === 'failed') {
      userItem.remove();
      answerItem.remove();
      return false;
    }
    return true;
  }

  #append(role, text) {
    const item = el(
      'li',
      { class: `message ${role}` },
      el('span', { class: 'role', text: role === 'user' ? 'You' : 'Model' }),
      el('div', { class: 'content', text }),
      el('span', { class: 'meta' }),
    );
    this.list.append(item);
    this.#scroll();
    return item;
  }

  #scroll() {
    this.list.lastElementChild?.scrollIntoView({ block: 'end' });
  }
}

function describe({ state, model, finish, usage }) {
  const parts = [];
  if (model) parts.push(model);
  if (state === 'stopped') parts.push('stopped');
  else if (state === 'failed') parts.push('failed');
  else if (finish === 'length') parts.push('cut at max tokens');
  if (usage) parts.push(`${usage.completion_tokens} tokens`);
  return parts.join(' · ');
}
