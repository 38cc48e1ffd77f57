"""The `openai` Python client against `hearth serve` (argv[1]) with SmolLM2: a chat,
and the same chat streamed with usage; log-probabilities, logit bias and penalties."""

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

# Log-probabilities: each token with three alternatives, the greedy choice the likeliest.
with_logprobs = client.chat.completions.create(**REQUEST, logprobs=True, top_logprobs=3)
tokens = with_logprobs.choices[0].logprobs.content
assert with_logprobs.choices[0].message.content == text, with_logprobs
assert len(tokens) == with_logprobs.usage.completion_tokens, with_logprobs
assert "".join(token.token for token in tokens) == text, tokens
for token in tokens:
    assert len(token.top_logprobs) == 3, token
    assert token.top_logprobs[0].token == token.token and token.logprob <= 0, token
    assert bytes(token.bytes).decode() == token.token, token
streamed_tokens = [
    token
    for chunk in client.chat.completions.create(
        **REQUEST, logprobs=True, top_logprobs=3, stream=True
    )
    if chunk.choices and chunk.choices[0].logprobs
    for token in chunk.choices[0].logprobs.content
]
assert [token.token for token in streamed_tokens] == [token.token for token in tokens]

# A logit bias of -100 bans the first token the model chose; the answer starts otherwise.
first = tokens[0].model_extra["id"]
banned = client.chat.completions.create(**REQUEST, logprobs=True, logit_bias={str(first): -100})
assert banned.choices[0].logprobs.content[0].model_extra["id"] != first, banned

# Presence and frequency penalties are honoured, not refused.
penalised = client.chat.completions.create(**REQUEST, presence_penalty=1.5, frequency_penalty=1.0)
assert penalised.choices[0].message.content.strip(), penalised

# Legacy completions take a count of alternatives.
legacy = client.completions.create(
    model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
)
logprobs = legacy.choices[0].logprobs
assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
assert "".join(logprobs.tokens) == legacy.choices[0].text, logprobs
assert all(len(top) == 2 for top in logprobs.top_logprobs), logprobs
assert logprobs.text_offset[0] == 0, logprobs
