// What the browser scripts check with: a failed check throws, and each step prints
// its sentence and how long it took; the page they drive, in headless Chromium through
// playwright-core (from HEARTH_BROWSER_NODE); and the native WebGPU plugin's greedy
// answer, which browser mode's must equal.

import { createRequire } from 'node:module';
import path from 'node:path';

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

const require = createRequire(path.join(process.env.HEARTH_BROWSER_NODE, 'node_modules', '/'));
const { chromium } = require('playwright-core');

// Headless Chromium (CHROMIUM) with one page whose errors are collected and whose
// requests are listed; `body({ page, fetched })` drives it, and any page error or console
// error not `expected` fails the script after it. `webgpu` turns on Chromium's WebGPU
// (SwiftShader here).
export async function withPage({ webgpu = false, expected = () => false }, body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: webgpu ? ['--enable-unsafe-webgpu'] : [],
  });
  const failures = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !expected(message.text())) failures.push(`console error: ${message.text()}`);
    });
    const fetched = [];
    page.on('request', (request) => fetched.push(request.url()));
    await body({ page, fetched });
    check(failures.length === 0, failures.join('\n'));
  } finally {
    await browser.close();
  }
}

export async function step(sentence, body) {
  const started = Date.now();
  await body();
  console.log(`ok: ${sentence} (${Date.now() - started} ms)`);
}

// The greedy answer of the native WebGPU plugin behind the hearth server at `base`:
// its token ids (chat logprobs carry them) and text. `sampling` adds request fields.
export async function nativeAnswer(base, { model, prompt, maxTokens, sampling = {} }) {
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      model,
      backend: 'webgpu',
      messages: [{ role: 'user', content: prompt }],
      temperature: 0,
      max_tokens: maxTokens,
      logprobs: true,
      ...sampling,
    }),
  });
  const body = await response.json();
  check(response.ok, `the native plugin answered ${response.status}: ${JSON.stringify(body)}`);
  check(body.hearth?.backend === 'webgpu', `the native answer came from ${body.hearth?.backend}`);
  return {
    ids: body.choices[0].logprobs.content.map((entry) => entry.id),
    text: body.choices[0].message.content,
    decodeMs: body.hearth.timings.decode_ms,
    tokens: body.usage.completion_tokens,
  };
}
