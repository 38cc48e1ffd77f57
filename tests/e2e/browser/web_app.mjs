// The web app as a person meets it, in headless Chromium driven by playwright-core:
// node web_app.mjs, with HEARTH_URL (a running `hearth serve` with SmolLM2 installed),
// HEARTH_BROWSER_NODE (the folder setup installed playwright-core in), CHROMIUM (the
// browser) and, to write docs/screenshots/web-app.png there, HEARTH_SCREENSHOTS=DIR.
// Each check prints its sentence; the first that fails throws, and the script exits 1.

import path from 'node:path';
import { check, step, withPage } from './steps.mjs';

const base = process.env.HEARTH_URL;
const MODEL = 'smollm2-135m';

// The current assistant answer's text lengths as the page drew them, one per change:
// a MutationObserver sees every update the stream makes, however fast.
async function watchLastAnswer(page) {
  await page.evaluate(() => {
    window.answerLengths = [];
    const messages = document.getElementById('messages');
    new MutationObserver(() => {
      const content = messages.querySelector('.message.assistant:last-child .content');
      const length = content?.textContent.length ?? 0;
      if (length !== window.answerLengths.at(-1)) window.answerLengths.push(length);
    }).observe(messages, { subtree: true, childList: true, characterData: true });
  });
}

const lastAnswer = '.message.assistant:last-child';

async function send(page, text) {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
}

async function answerLength(page) {
  return page.$eval(`${lastAnswer} .content`, (content) => content.textContent.length);
}

// The browser logs each failed request as a console error; only one step asks for one.
let expectFailedRequest = false;
const expected = (error) => expectFailedRequest && error.includes('status of 400');
await withPage({ expected }, async ({ page }) => {

  await step('the page loads with the model picker filled from the catalog', async () => {
    await page.goto(base);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    const installed = await page.$$eval('#model optgroup[label="Installed"] option', (options) =>
      options.map((option) => option.value),
    );
    check(installed.includes(MODEL), `installed models offered: ${installed}`);
    const missing = await page.$$eval('#model optgroup[label="Not installed"] option', (options) =>
      options.map((option) => option.disabled),
    );
    check(missing.length > 0 && missing.every(Boolean), 'models not installed are listed, disabled');
    const backends = await page.$$eval('#backend option', (options) => options.map((o) => o.value));
    check(backends.includes('llamacpp'), `backends offered: ${backends}`);
    const routing = await page.textContent('#routing');
    check(routing.includes('candidates'), `the routing panel shows the default route: ${routing}`);
    await page.selectOption('#model', MODEL);
    const facts = await page.textContent('#model-facts');
    check(facts.includes('llamacpp 1'), `the picked model's tiers are shown: ${facts}`);
  });

  await step('an error from the server is shown and the message goes back into the box', async () => {
    await page.fill('#temperature', '5');
    expectFailedRequest = true;
    await send(page, 'Hello?');
    await page.waitForSelector('#chat-error:not([hidden])');
    const error = await page.textContent('#chat-error');
    check(error.includes('temperature'), `the server's message is shown: ${error}`);
    check((await page.inputValue('#prompt')) === 'Hello?', 'the unsent message is back in the box');
    check((await page.$$('.message')).length === 0, 'the failed exchange left no messages');
    expectFailedRequest = false;
    await page.fill('#temperature', '');
    await page.fill('#prompt', '');
  });

  await step('a chat message streams an answer that grows over several updates', async () => {
    await page.fill('#max-tokens', '40');
    await page.fill('#seed', '1');
    await watchLastAnswer(page);
    await send(page, 'Why is the sky blue?');
    await page.waitForSelector(`${lastAnswer}[data-state="done"]`, { timeout: 20_000 });
    const lengths = await page.evaluate(() => window.answerLengths);
    check(lengths.length >= 5, `the answer was drawn in ${lengths.length} updates: ${lengths}`);
    check(lengths.every((length, i) => i === 0 || length > lengths[i - 1]), `it only grew: ${lengths}`);
    const meta = await page.textContent(`${lastAnswer} .meta`);
    check(meta.includes(MODEL), `the answer names its model: ${meta}`);
  });

  await step('the loaded-models panel shows the model', async () => {
    const entry = await page.waitForSelector(`#loaded-models li[data-model="${MODEL}"]`, { timeout: 10_000 });
    const text = await entry.textContent();
    check(text.includes('llamacpp'), `the entry names its backend: ${text}`);
    if (process.env.HEARTH_SCREENSHOTS) {
      await page.screenshot({ path: path.join(process.env.HEARTH_SCREENSHOTS, 'web-app.png'), fullPage: true });
    }
  });

  await step('Stop ends a long generation early and the answer stops growing', async () => {
    await page.fill('#max-tokens', '2000');
    await send(page, 'Write a very long story about a dragon who learns to bake bread.');
    await page.waitForFunction(
      (selector) => (document.querySelector(`${selector} .content`)?.textContent.length ?? 0) > 20,
      lastAnswer,
      { timeout: 20_000 },
    );
    check(await page.isEnabled('#stop'), 'Stop is enabled while the answer streams');
    await page.click('#stop');
    await page.waitForSelector(`${lastAnswer}[data-state="stopped"]`, { timeout: 5_000 });
    const stoppedAt = await answerLength(page);
    await page.waitForTimeout(1_500);
    check((await answerLength(page)) === stoppedAt, 'the answer did not grow after Stop');
    check(await page.isDisabled('#stop'), 'Stop is disabled again');
    // hearth stops generating when the connection closes: the model is soon no longer in use.
    const released = await page.evaluate(async (model) => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const ps = await (await fetch('/api/ps')).json();
        const entry = ps.models.find((candidate) => candidate.name === model);
        if (entry && entry.refs === 0) return true;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return false;
    }, MODEL);
    check(released, 'the server released the model after Stop');
  });

  await step('the server stays healthy and a following message still works', async () => {
    const health = await page.evaluate(async () => (await fetch('/health')).json());
    check(health.status === 'ok', `health: ${JSON.stringify(health)}`);
    await page.fill('#max-tokens', '12');
    await send(page, 'Say hello.');
    await page.waitForSelector(`${lastAnswer}[data-state="done"]`, { timeout: 20_000 });
    check((await answerLength(page)) > 0, 'the following message was answered');
    check((await page.$$('.message')).length === 6, 'the conversation holds all three exchanges');
  });
});
