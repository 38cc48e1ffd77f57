// The one place the page talks to hearth. It uses the HTTP API as any client does: every
// request carries the API key when one is set, and every error response becomes an
// ApiError with the server's own message, so the page can show it rather than guess.

const KEY_STORAGE = 'hearth.apiKey';

export function storedApiKey() {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function storeApiKey(key) {
  if (key) {
    localStorage.setItem(KEY_STORAGE, key);
  } else {
    localStorage.removeItem(KEY_STORAGE);
  }
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

function headers(withBody) {
  const result = {};
  if (withBody) result['Content-Type'] = 'application/json';
  const key = storedApiKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// hearth's errors come in the shape of the route's API: OpenAI's and Anthropic's
// `{error: {message}}`, Ollama's `{error: "…"}`.
function errorMessage(body) {
  const error = body?.error;
  if (typeof error === 'string') return error;
  if (typeof error?.message === 'string') return error.message;
  return null;
}

async function failure(response) {
  const text = await response.text();
  let message = null;
  try {
    message = errorMessage(JSON.parse(text));
  } catch {
    // Not JSON (a proxy's page, say): the text itself is the best message there is.
  }
  return new ApiError(response.status, `${response.status}: ${message ?? (text || response.statusText)}`);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// POSTs `body` and yields the JSON payload of each server-sent event until `[DONE]`.
// An error the server reports inside the stream (after its 200) is thrown as an ApiError
// too, and so is a stream that ends without `[DONE]` (the server or the network went
// away), so a cut answer never reads as a finished one. Aborting `signal` rejects with
// the browser's AbortError.
export async function* streamEvents(path, body, signal) {
  const response = await fetch(path, {
    method: 'POST',
    headers: headers(true),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new ApiError(0, 'the connection closed before the answer was finished');
      buffer += value.replaceAll('\r\n', '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        const payload = JSON.parse(data);
        const message = errorMessage(payload);
        if (message) throw new ApiError(response.status, message);
        yield payload;
      }
    }
  } finally {
    // Leaving early (a thrown error, a consumer that stops) closes the connection, which
    // is how hearth learns to stop generating.
    reader.cancel().catch(() => {});
  }
}
