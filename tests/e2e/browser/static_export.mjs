// A static export of the web app (`hearth export-web`) in headless Chromium: the folder
// on a plain web server under a sub-path (EXPORT_URL, ending in `/`), the model on
// another origin (MODELS_URL), no hearth behind the page. The page starts in browser
// mode alone, reads the catalog and architectures from the export, the model by Range
// across origins, and answers with the native WebGPU plugin's greedy tokens (HEARTH_URL:
// a `hearth serve` with that plugin, asked only for the reference answer). The catalog's
// idle timeouts are 2 s and 4 s, so the tab's idle release and reload are seen too.
// node static_export.mjs, with HEARTH_BROWSER_NODE and CHROMIUM as well.

import { check, nativeAnswer, step, withPage } from './steps.mjs';

const exportUrl = process.env.EXPORT_URL;
const modelsUrl = process.env.MODELS_URL;
const MODEL = 'smollm2-135m';
// SwiftShader runs a decode step of SmolLM2 in about two seconds: a few tokens suffice.
const MAX_TOKENS = 6;
const PROMPT = 'What is the capital of France?';
const modelFile = `${modelsUrl}SmolLM2-135M-Instruct.Q4_1.gguf`;

let native;
await step('the native WebGPU plugin answers the prompt greedily', async () => {
  native = await nativeAnswer(process.env.HEARTH_URL, { model: MODEL, prompt: PROMPT, maxTokens: MAX_TOKENS });
  console.log(`    native tokens: ${JSON.stringify(native.ids)}`);
});

await withPage({ webgpu: true }, async ({ page, fetched }) => {

  await step('the export starts in browser mode alone, with the WebGPU tiers of its catalog', async () => {
    await page.goto(exportUrl);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    check((await page.getAttribute('body', 'data-site')) === 'static-export', 'the page knows it is an export');
    check(await page.isChecked('#browser-mode'), 'browser mode is chosen');
    check(await page.isDisabled('#server-mode'), 'server mode cannot be chosen');
    const note = await page.textContent('#mode-note');
    check((await page.isVisible('#mode-note')) && note.includes('hearth serve'), `the page says why: ${note}`);
    check(await page.isHidden('#server-section'), 'the server panel is hidden');
    check(await page.isHidden('#key-section'), 'the API key field is hidden');
    const connection = await page.textContent('#connection');
    check(connection.includes('Static export'), `the header names the export: ${connection}`);
    const tiers = await page.$$eval('#browser-tier option', (options) => options.map((o) => o.textContent));
    check(tiers.some((t) => t.startsWith('Tier 1') && t.includes(MODEL)), `tier 1 offers SmolLM2: ${tiers}`);
  });

  await step('SmolLM2 answers in the page, read by Range from the model server', async () => {
    await page.selectOption('#browser-tier', '1');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', String(MAX_TOKENS));
    await page.fill('#prompt', PROMPT);
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.message.assistant:last-child[data-state="done"]', { timeout: 300_000 });
    const status = await page.textContent('#browser-status');
    check(status.includes(`${MODEL} (tier 1)`), `the status names the model that loaded: ${status}`);
    const answer = await page.textContent('.message.assistant:last-child .content');
    check(answer === native.text, `the page's answer ${JSON.stringify(answer)} is the native ${JSON.stringify(native.text)}`);
    check(fetched.includes(modelFile), `the model was read from ${modelFile}`);
    const elsewhere = fetched.filter((url) => !url.startsWith(exportUrl) && !url.startsWith(modelsUrl));
    check(elsewhere.length === 0, `every request stayed in the export's folder or the model server: ${elsewhere}`);
  });

  await step("after the catalog's idle timeouts the tab frees the KV cache, then the model, and the next message loads it again", async () => {
    const statusIncludes = (text) =>
      page.waitForFunction((wanted) => document.querySelector('#browser-status').textContent.includes(wanted), text, {
        timeout: 30_000,
        polling: 100,
      });
    await statusIncludes('its KV cache was freed');
    await statusIncludes('was unloaded after 4 s idle');
    const before = fetched.length;
    await page.click('#new-chat');
    await page.fill('#prompt', PROMPT);
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.message.assistant:last-child[data-state="done"]', { timeout: 300_000 });
    const answer = await page.textContent('.message.assistant:last-child .content');
    check(answer === native.text, `the reloaded model's answer ${JSON.stringify(answer)} is the native ${JSON.stringify(native.text)}`);
    const status = await page.textContent('#browser-status');
    check(status.includes(MODEL), `the status names the model again: ${status}`);
    const reads = fetched.slice(before).filter((url) => url === modelFile).length;
    const firstReads = fetched.slice(0, before).filter((url) => url === modelFile).length;
    check(reads < firstReads, `the reload read ${reads} pieces from the model server, the first load ${firstReads}: the rest came from Cache Storage`);
  });

  await step("the in-page engine's greedy tokens equal the native plugin's", async () => {
    const ids = await page.evaluate(
      async ({ model, url, prompt, maxTokens }) => {
        const { Engine } = await import(new URL('app/engine/engine.js', location.href).href);
        const architectures = new URL('architectures.json', location.href).href;
        const engine = await Engine.load({ url, architectures, model });
        const reply = await engine.chat.completions.create({
          messages: [{ role: 'user', content: prompt }],
          temperature: 0,
          max_tokens: maxTokens,
          logprobs: true,
        });
        await engine.release();
        return reply.choices[0].logprobs.content.map((entry) => entry.id);
      },
      { model: MODEL, url: modelFile, prompt: PROMPT, maxTokens: MAX_TOKENS },
    );
    check(JSON.stringify(ids) === JSON.stringify(native.ids), `the page's tokens ${JSON.stringify(ids)} are the native ${JSON.stringify(native.ids)}`);
  });
});
