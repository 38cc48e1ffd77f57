// The in-page engine: a GGUF model read by HTTP Range, run on the browser's WebGPU
// with the native plugin's kernels, and a WebLLM-like API for pages that embed it:
//
//   const engine = await Engine.load({ url: ggufUrl, architectures: architecturesUrl, onProgress });
//   const reply = await engine.chat.completions.create({ messages });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) …
//
// Requests and answers are OpenAI's chat-completion shapes, with `logprobs: true`
// giving each token's `id` as hearth's API does, and `stop` ending the answer before a
// stop string; a field the engine does not act on is refused by name. One generation
// runs at a time; the KV cache keeps the last conversation, so a follow-up evaluates
// only its new tokens.
// `release()` frees the GPU buffers (idle management); the next request loads again.
// `url` is the GGUF file (hearth serve's GET /api/gguf/{model}, or any URL that answers
// Range requests) and `architectures` the model layer's description (GET
// /api/architectures, or the static export's copy). The engine's own files (templates,
// kernels) are found beside this module, so it works under any path prefix.

import { configFromGguf, fetchArchitectures } from './config.js';
import { Forward, Scratch, destroyAll, loadWeights, neededTensors } from './forward.js';
import { GgufFile, RangeReader } from './gguf.js';
import { Gpu } from './gpu.js';
import { Kernels } from './kernels.js';
import { Sampler, samplingProblem } from './sampler.js';
import { StopMatcher } from './stop.js';
import { Tokenizer } from './tokenizer.js';

const DEFAULT_CONTEXT = 2048;
const DEFAULT_MAX_TOKENS = 512;
// The request fields the engine acts on; any other is refused by name rather than
// ignored. `model` must be the loaded one; `stream_options` is accepted because the
// last chunk always carries usage; `signal` is an AbortSignal that stops the answer.
const REQUEST_FIELDS = new Set([
  'messages', 'model', 'stream', 'stream_options', 'temperature', 'top_p', 'top_k', 'min_p',
  'repeat_penalty', 'repeat_last_n', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'seed',
  'max_tokens', 'max_completion_tokens', 'logprobs', 'stop', 'signal',
]);

// The request's first problem, as a sentence, or null.
function requestProblem(request, model) {
  const unsupported = Object.keys(request).filter((field) => !REQUEST_FIELDS.has(field) && request[field] !== undefined);
  if (unsupported.length) {
    return `the in-page engine does not support ${unsupported.map((field) => `\`${field}\``).join(', ')}`;
  }
  if (request.model !== undefined && request.model !== model) {
    return `\`model\` is ${JSON.stringify(request.model)}, but this engine runs ${JSON.stringify(model)}`;
  }
  return samplingProblem(request);
}

async function fetchText(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.text();
}

// The chat template as the native side picks it (sdk/src/helpers/chat.rs): the file's
// own, else its family's turn format, else ChatML; rendered by @huggingface/jinja
// (which has `raise_exception` built in).
async function chatTemplate(metadata, architecture, tokenizer) {
  const { Template } = await import('./jinja.js');
  const source =
    metadata.get('tokenizer.chat_template') ??
    (await fetchText(new URL(`../templates/${architecture.startsWith('gemma') ? 'gemma' : 'chatml'}.jinja`, import.meta.url)));
  const template = new Template(source);
  const bos = tokenizer.bos === null ? '' : tokenizer.tokenText(tokenizer.bos);
  const eos = tokenizer.eos === null ? '' : tokenizer.tokenText(tokenizer.eos);
  return (messages) =>
    template.render({
      messages,
      add_generation_prompt: true,
      bos_token: bos,
      eos_token: eos,
    });
}

export class Engine {
  // Read `url`'s header, build the tokenizer and template, compile the kernels and
  // upload the weights. `onProgress({ loaded, total, stage })` hears each step;
  // `headers` go with every request (the API key); `kernels` overrides the plan.
  static async load({ url, architectures, model = url, headers = {}, onProgress = () => {}, contextSize, kernels } = {}) {
    if (!url || !architectures) throw new Error('Engine.load needs `url` (the GGUF file) and `architectures` (its JSON)');
    const engine = new Engine({ url, architectures, model, headers, onProgress, contextSize, kernels });
    await engine.#load();
    return engine;
  }

  constructor(options) {
    this.options = options;
    this.model = options.model;
    this.busy = Promise.resolve();
    this.controller = null;
    this.chat = { completions: { create: (request) => this.#create(request) } };
  }

  async #load() {
    const { url, architectures, headers, onProgress, kernels: plan } = this.options;
    onProgress({ stage: 'reading the model header', loaded: 0, total: 0 });
    const description = await fetchArchitectures(architectures, headers);
    this.gguf ??= await GgufFile.open(new RangeReader(url, headers));
    this.config = configFromGguf(this.gguf, description);
    this.tokenizer ??= new Tokenizer(this.gguf.metadata);
    this.render ??= await chatTemplate(this.gguf.metadata, this.config.arch.gguf_name, this.tokenizer);
    this.gpu = await Gpu.open(plan);
    onProgress({ stage: 'compiling kernels', loaded: 0, total: 0 });
    const types = [...new Set(neededTensors(this.gguf, this.config).map((name) => this.gguf.tensor(name)?.type))]
      .filter((type) => description.tensor_types.includes(type));
    this.kernels = await Kernels.create(this.gpu, types);
    const total = neededTensors(this.gguf, this.config).reduce((sum, name) => sum + (this.gguf.tensor(name)?.bytes ?? 0), 0);
    let loaded = 0;
    const stage = 'loading weights';
    this.weights = await this.gpu.checked('uploading the weights', () =>
      loadWeights(this.gpu, this.gguf, this.config, description.tensor_types, (bytes) => {
        loaded += bytes;
        onProgress({ stage, loaded, total });
      }),
    );
    this.scratch = await this.gpu.checked('allocating the KV cache', () => new Scratch(this.gpu, this.config, this.#context()));
    this.forward = new Forward(this.gpu, this.kernels, this.config, this.weights);
    this.cached = [];
    onProgress({ stage: 'ready', loaded: total, total });
  }

  #context() {
    return Math.min(this.options.contextSize ?? DEFAULT_CONTEXT, this.config.contextLength);
  }

  // What the device is and which kernels run.
  get profile() {
    return this.gpu?.profile ?? null;
  }

  get loaded() {
    return Boolean(this.weights);
  }

  // Free every GPU buffer (the tab went idle); the next request loads again, from the
  // browser's cache.
  async release() {
    await this.busy;
    if (!this.weights) return;
    destroyAll(this.weights, this.scratch);
    this.gpu.device.destroy();
    this.weights = this.scratch = this.forward = this.kernels = this.gpu = null;
    this.cached = [];
  }

  // Free the KV cache alone (the soft idle timeout); the next request allocates it again.
  async releaseCache() {
    await this.busy;
    if (!this.scratch) return;
    destroyAll({ layers: [] }, this.scratch);
    this.scratch = null;
    this.cached = [];
  }

  interruptGenerate() {
    this.controller?.abort();
  }

  // Requests wait for the one before to finish: its answer is read to its end (or
  // stopped) before the next one touches the KV cache.
  #create(request) {
    const problem = requestProblem(request, this.model);
    if (problem) return Promise.reject(new Error(problem));
    let stops;
    try {
      stops = new StopMatcher(request.stop);
    } catch (error) {
      return Promise.reject(error);
    }
    const previous = this.busy;
    let finished;
    this.busy = new Promise((resolve) => {
      finished = resolve;
    });
    const run = previous.then(() => this.#generate(request, stops, finished));
    run.catch(finished);
    if (!request.stream) return run.then((iterator) => collect(iterator, this.model));
    return run;
  }

  // The answer as an async iterator of chunks; generation happens as it is consumed,
  // and `finished()` runs when it ends.
  async #generate(request, stops, finished) {
    if (!this.weights) await this.#load();
    this.scratch ??= await this.gpu.checked('allocating the KV cache', () => new Scratch(this.gpu, this.config, this.#context()));
    const messages = request.messages ?? [];
    if (!messages.length) throw new Error('messages must not be empty');
    const prompt = this.tokenizer.encode(await this.render(messages));
    const maxTokens = request.max_tokens ?? request.max_completion_tokens ?? DEFAULT_MAX_TOKENS;
    const sampler = new Sampler(request);
    prompt.forEach((token) => sampler.accept(token));
    const controller = new AbortController();
    request.signal?.addEventListener('abort', () => controller.abort());
    this.controller = controller;
    const engine = this;
    const id = `chatcmpl-${crypto.randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta, finish, extra = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: engine.model,
      choices: [{ index: 0, delta, finish_reason: finish, ...extra }],
    });
    return (async function* answer() {
      const started = performance.now();
      let logits = await engine.#evaluate(prompt);
      const promptDone = performance.now();
      const decoder = engine.tokenizer.decoder();
      let finish = 'length';
      let stoppedAtString = false;
      let generated = 0;
      try {
        while (generated < maxTokens) {
          if (controller.signal.aborted) throw new DOMException('the generation was stopped', 'AbortError');
          const token = sampler.sample(logits);
          sampler.accept(token);
          if (engine.tokenizer.endOfGeneration.has(token)) {
            finish = 'stop';
            break;
          }
          generated++;
          const extra = request.logprobs ? { logprobs: { content: [logprob(logits, token, engine.tokenizer)] } } : {};
          const released = stops.push(decoder.push(token));
          yield chunk({ content: released.text }, null, extra);
          if (released.stopped) {
            finish = 'stop';
            stoppedAtString = true;
            break;
          }
          // The cache holds only evaluated tokens: the last one is not, when the
          // answer ends here.
          if (generated === maxTokens || engine.cached.length + 1 >= engine.scratch.ctx) break;
          logits = await engine.forward.run(engine.scratch, [token], engine.cached.length);
          engine.cached.push(token);
        }
        if (!stoppedAtString) {
          const tail = stops.push(decoder.end());
          if (tail.stopped) finish = 'stop';
          const rest = tail.stopped ? tail.text : tail.text + stops.end();
          if (rest) yield chunk({ content: rest }, null);
        }
        const decodeSeconds = (performance.now() - promptDone) / 1000;
        yield {
          ...chunk({}, finish),
          usage: { prompt_tokens: prompt.length, completion_tokens: generated, total_tokens: prompt.length + generated },
          timings: {
            prompt_ms: promptDone - started,
            decode_tokens_per_second: generated > 1 ? (generated - 1) / decodeSeconds : null,
          },
        };
      } finally {
        engine.controller = null;
        finished();
      }
    })();
  }

  // Evaluate the prompt after the longest prefix already in the KV cache; the last
  // token is always evaluated, for its logits.
  async #evaluate(prompt) {
    if (prompt.length > this.scratch.ctx) {
      throw new Error(`the prompt's ${prompt.length} tokens do not fit the context of ${this.scratch.ctx}`);
    }
    let keep = 0;
    while (keep < this.cached.length && keep < prompt.length - 1 && this.cached[keep] === prompt[keep]) keep++;
    this.cached = prompt.slice();
    return this.forward.run(this.scratch, prompt.slice(keep), keep);
  }
}

// A token's entry as hearth's chat logprobs carry it: id, text and log-probability.
function logprob(logits, token, tokenizer) {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  return { id: token, token: tokenizer.tokenText(token), logprob: logits[token] - max - Math.log(sum) };
}

// A whole answer in `chat.completion` shape, from the stream.
async function collect(iterator, model) {
  let content = '';
  let finish = null;
  let usage = null;
  let id = '';
  const logprobs = [];
  for await (const chunk of iterator) {
    id = chunk.id;
    const choice = chunk.choices[0];
    content += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
    logprobs.push(...(choice.logprobs?.content ?? []));
    usage = chunk.usage ?? usage;
  }
  return {
    id,
    object: 'chat.completion',
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish, logprobs: { content: logprobs } }],
    usage,
  };
}
