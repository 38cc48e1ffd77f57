// What the browser scripts check with: a failed check throws, and each step prints
// its sentence and how long it took; and the native WebGPU plugin's greedy answer,
// which browser mode's must equal.

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

export async function step(sentence, body) {
  const started = Date.now();
  await body();
  console.log(`ok: ${sentence} (${Date.now() - started} ms)`);
}

// The greedy answer of the native WebGPU plugin behind the hearth server at `base`:
// its token ids (chat logprobs carry them) and text.
export async function nativeAnswer(base, { model, prompt, maxTokens }) {
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
