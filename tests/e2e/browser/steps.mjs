// What both browser scripts check with: a failed check throws, and each step prints
// its sentence and how long it took.

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

export async function step(sentence, body) {
  const started = Date.now();
  await body();
  console.log(`ok: ${sentence} (${Date.now() - started} ms)`);
}
