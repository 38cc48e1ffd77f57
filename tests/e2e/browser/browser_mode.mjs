// Browser mode in headless Chromium on its WebGPU (SwiftShader, on the CPU): the page's
// own engine runs SmolLM2 with no hearth backend involved, and its greedy tokens equal
// the native WebGPU plugin's. node browser_mode.mjs, with HEARTH_URL (a `hearth serve`
// with the WebGPU plugin and a catalog whose WebGPU tier 2 is a model the page cannot
// run), HEARTH_BROWSER_NODE, CHROMIUM and, for docs/screenshots/browser-mode.png,
// HEARTH_SCREENSHOTS=DIR. Each check prints its sentence; the first that fails throws.

import path from 'node:path';
import { check, nativeAnswer, step, withPage } from './steps.mjs';

const base = process.env.HEARTH_URL;
const MODEL = 'smollm2-135m';
const FAILING_MODEL = 'all-minilm-l6-v2';
// SwiftShader runs a decode step of SmolLM2 in about two seconds: a few tokens suffice.
const MAX_TOKENS = 6;
const PROMPTS = ['What is the capital of France?', 'Name a primary color.', 'Count from 1 to 5.'];

const native = [];
// Penalties and a bias that change the greedy answer, in the native API's shape (the
// first answer's first token banned).
let penalties;
let penalised;
await step(`the native WebGPU plugin answers ${PROMPTS.length} prompts greedily, and once with penalties`, async () => {
  for (const prompt of PROMPTS) native.push(await nativeAnswer(base, { model: MODEL, prompt, maxTokens: MAX_TOKENS }));
  penalties = { logit_bias: { [native[0].ids[0]]: -100 }, frequency_penalty: 1.5, presence_penalty: 0.5, repeat_penalty: 1.3 };
  penalised = await nativeAnswer(base, { model: MODEL, prompt: PROMPTS[0], maxTokens: MAX_TOKENS, sampling: penalties });
  check(penalised.ids[0] !== native[0].ids[0], `the banned token ${native[0].ids[0]} does not come first: ${penalised.ids}`);
  const rate = native.map((answer) => (answer.tokens - 1) / (answer.decodeMs / 1000));
  console.log(`    native tokens: ${JSON.stringify(native.map((answer) => answer.ids))}`);
  console.log(`    native decode: ${rate.map((r) => r.toFixed(2)).join(', ')} tok/s`);
});

await withPage({ webgpu: true }, async ({ page, fetched }) => {

  await step('browser mode shows the WebGPU tiers of the catalog', async () => {
    await page.goto(base);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    await page.check('input[name="mode"][value="browser"]');
    check(await page.isVisible('#browser-section'), 'the browser section is shown');
    check(await page.isHidden('#model-section'), "the server's model picker is hidden");
    const tiers = await page.$$eval('#browser-tier option', (options) => options.map((o) => o.textContent));
    check(tiers.some((t) => t.startsWith('Tier 1') && t.includes(MODEL)), `tier 1 offers SmolLM2: ${tiers}`);
    check(tiers.some((t) => t.startsWith('Tier 2') && t.includes(FAILING_MODEL)), `tier 2 is offered: ${tiers}`);
  });

  await step('tier 2 fails to load, with its reason shown, and tier 1 answers in the page', async () => {
    await page.selectOption('#browser-tier', '2');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', String(MAX_TOKENS));
    const before = fetched.length;
    await page.fill('#prompt', PROMPTS[0]);
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.message.assistant:last-child[data-state="done"]', { timeout: 300_000 });
    const reason = await page.textContent(`#browser-reasons li[data-model="${FAILING_MODEL}"]`);
    check(reason.includes('architecture `bert`'), `the failed tier's reason is shown: ${reason}`);
    const status = await page.textContent('#browser-status');
    check(status.includes(`${MODEL} (tier 1)`), `the status names the tier that loaded: ${status}`);
    const answer = await page.textContent('.message.assistant:last-child .content');
    check(answer === native[0].text, `the page's answer ${JSON.stringify(answer)} is the native ${JSON.stringify(native[0].text)}`);
    const meta = await page.textContent('.message.assistant:last-child .meta');
    check(meta.includes(MODEL), `the answer names its model: ${meta}`);
    const calls = fetched.slice(before).map((url) => new URL(url).pathname);
    check(!calls.includes('/v1/chat/completions'), `no chat request went to the server: ${calls}`);
    check(calls.includes(`/api/gguf/${MODEL}`), `the model was read from the blob endpoint: ${calls}`);
    const device = await page.textContent('#browser-device');
    check(device.includes('software kernels'), `SwiftShader gets the software kernels: ${device}`);
    if (process.env.HEARTH_SCREENSHOTS) {
      await page.screenshot({ path: path.join(process.env.HEARTH_SCREENSHOTS, 'browser-mode.png'), fullPage: true });
    }
  });

  // A stop string from the middle of the first native answer: the page's answer ends
  // right before it.
  const stopString = native[0].text.slice(Math.floor(native[0].text.length / 2)).slice(0, 4);
  await step(`the in-page engine's greedy tokens equal the native plugin's on ${PROMPTS.length} prompts`, async () => {
    const results = await page.evaluate(
      async ({ model, prompts, maxTokens, stopString, penalties }) => {
        const { Engine } = await import('/app/engine/engine.js');
        const engine = await Engine.load({ url: `/api/gguf/${model}`, architectures: '/api/architectures', model });
        const answers = [];
        for (const prompt of prompts) {
          const reply = await engine.chat.completions.create({
            messages: [{ role: 'user', content: prompt }],
            temperature: 0,
            max_tokens: maxTokens,
            logprobs: true,
          });
          answers.push({ ids: reply.choices[0].logprobs.content.map((entry) => entry.id), text: reply.choices[0].message.content, usage: reply.usage });
        }
        const first = { messages: [{ role: 'user', content: prompts[0] }], temperature: 0, max_tokens: maxTokens };
        const stopped = await engine.chat.completions.create({ ...first, stop: ['never in the answer', stopString] });
        const penalised = await engine.chat.completions.create({ ...first, ...penalties, logprobs: true });
        const refuse = (fields) =>
          engine.chat.completions.create({ ...first, ...fields }).then(
            () => 'answered',
            (error) => error.message,
          );
        const refused = await refuse({ tools: [] });
        const outOfRange = await refuse({ frequency_penalty: 3 });
        const stream = await engine.chat.completions.create({ ...first, stream: true });
        let timings = null;
        for await (const chunk of stream) timings = chunk.timings ?? timings;
        await engine.release();
        return {
          answers,
          timings,
          stopped: { text: stopped.choices[0].message.content, finish: stopped.choices[0].finish_reason },
          penalised: penalised.choices[0].logprobs.content.map((entry) => entry.id),
          refused,
          outOfRange,
          cached: (await (await caches.open('hearth-gguf')).keys()).length,
        };
      },
      { model: MODEL, prompts: PROMPTS, maxTokens: MAX_TOKENS, stopString, penalties },
    );
    results.answers.forEach((answer, index) => {
      check(
        JSON.stringify(answer.ids) === JSON.stringify(native[index].ids),
        `prompt ${index + 1}: the page's tokens ${JSON.stringify(answer.ids)} are the native ${JSON.stringify(native[index].ids)}`,
      );
      check(answer.text === native[index].text, `prompt ${index + 1}: ${JSON.stringify(answer.text)} is the native text`);
    });
    const beforeStop = native[0].text.slice(0, native[0].text.indexOf(stopString));
    check(
      results.stopped.text === beforeStop && results.stopped.finish === 'stop',
      `with stop ${JSON.stringify(stopString)} the answer is ${JSON.stringify(results.stopped.text)} (${results.stopped.finish}), the native text up to it`,
    );
    check(
      JSON.stringify(results.penalised) === JSON.stringify(penalised.ids),
      `with a logit bias and penalties the page's tokens ${JSON.stringify(results.penalised)} are the native ${JSON.stringify(penalised.ids)}`,
    );
    check(results.refused.includes('`tools`'), `a field the engine does not act on is refused by name: ${results.refused}`);
    check(
      results.outOfRange.includes('`frequency_penalty`'),
      `a value out of its range is refused by name: ${results.outOfRange}`,
    );
    check(results.cached > 0, 'the model file pieces are kept in Cache Storage');
    console.log(`    page tokens: ${JSON.stringify(results.answers.map((answer) => answer.ids))}`);
    console.log(`    page decode: ${results.timings.decode_tokens_per_second?.toFixed(2)} tok/s, prompt ${results.timings.prompt_ms.toFixed(0)} ms`);
  });
});
