"""The `openai` Python client against `hearth serve` (argv[1]) with SmolLM2: a chat,
and the same chat streamed with usage."""

import sys

import openai

MODEL = "smollm2-135m"
REQUEST = {
    "model": MODEL,
    "max_tokens": 12,
    "temperature": 0,
    "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
}

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)

assert MODEL in [model.id for model in client.models.list()]

completion = client.chat.completions.create(**REQUEST)
text = completion.choices[0].message.content
assert text.strip() and completion.choices[0].finish_reason in ("stop", "length"), completion
assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0, completion

chunks = list(
    client.chat.completions.create(**REQUEST, stream=True, stream_options={"include_usage": True})
)
streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
assert streamed == text, (streamed, text)
assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens, chunks[-1]
