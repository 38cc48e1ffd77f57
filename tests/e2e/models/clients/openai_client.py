"""The `openai` Python client against `hearth serve` (argv[1]) with SmolLM2: a chat,
and the same chat streamed with usage; log-probabilities, logit bias and penalties; the Responses API, whole and streamed;
structured output (parse() into a pydantic model, json_object, the Responses API's schema);
tool calls on chat and the Responses API (required, streamed, and the result sent back);
embeddings with all-MiniLM-L6-v2."""

import json
import sys

import openai
import pydantic

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

# The Responses API answers the same question as chat does, whole and streamed.
ASKED = {"model": MODEL, "max_output_tokens": 12, "temperature": 0}
QUESTION = REQUEST["messages"][0]["content"]
JSON_QUESTION = "Reply in JSON with the keys city and country: what is the capital of France?"
reply = client.responses.create(**ASKED, input=QUESTION)
assert reply.output_text == completion.choices[0].message.content, (reply, completion)
assert reply.status in ("completed", "incomplete") and reply.usage.output_tokens > 0, reply
events = list(client.responses.create(**ASKED, input=QUESTION, stream=True))
assert [event.sequence_number for event in events] == list(range(len(events))), events
assert events[0].type == "response.created", events[0]
deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
assert deltas == reply.output_text, (deltas, reply.output_text)
assert events[-1].type in ("response.completed", "response.incomplete"), events[-1]
assert events[-1].response.output_text == reply.output_text, events[-1]
# Log-probabilities on the Responses API, as its `include` asks for them: one entry per
# token, with the alternatives asked for, whole and streamed.
LOGPROBS = {"include": ["message.output_text.logprobs"], "top_logprobs": 3}
scored = client.responses.create(**ASKED, input=QUESTION, **LOGPROBS)
scored_tokens = scored.output[0].content[0].logprobs
assert "".join(entry.token for entry in scored_tokens) == scored.output_text == reply.output_text, scored
assert all(len(entry.top_logprobs) == 3 and entry.logprob <= 0 for entry in scored_tokens), scored_tokens
scored_events = list(client.responses.create(**ASKED, input=QUESTION, stream=True, **LOGPROBS))
streamed_scores = [entry for event in scored_events if event.type == "response.output_text.delta" for entry in event.logprobs]
assert [entry.token for entry in streamed_scores] == [entry.token for entry in scored_tokens], streamed_scores
WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER = {"type": "function", "function": WEATHER_FUNCTION}

# Function tools on the Responses API: the call is an output item, its output an input
# item the next request reads.
RESPONSE_TOOL = {"type": "function"} | {
    key: WEATHER_FUNCTION[key] for key in ("name", "description", "parameters")
}
responded_call = client.responses.create(
    **(ASKED | {"max_output_tokens": 60}), input="What is the weather in Paris?",
    tools=[RESPONSE_TOOL], tool_choice="required",
)
function_call = next(item for item in responded_call.output if item.type == "function_call")
assert function_call.name == "get_weather" and json.loads(function_call.arguments)["city"], function_call
responded = client.responses.create(
    **(ASKED | {"max_output_tokens": 60}), tools=[RESPONSE_TOOL],
    input=[{"role": "user", "content": "What is the weather in Paris?"}, function_call.model_dump(exclude_none=True),
           {"type": "function_call_output", "call_id": function_call.call_id, "output": "Sunny."}],
)
assert responded.usage.input_tokens > responded_call.usage.input_tokens, "the call and output were read"
with client.responses.stream(
    **(ASKED | {"max_output_tokens": 60}), input="What is the weather in Paris?",
    tools=[RESPONSE_TOOL], tool_choice="required",
) as stream:
    argument_deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
    streamed_response = stream.get_final_response()
# The arguments arrive in pieces that join into the item's (the model's own spacing, so
# they are compared as JSON with the unstreamed call's).
assert len(argument_deltas) > 1 and "".join(argument_deltas) == streamed_response.output[0].arguments, argument_deltas
assert [json.loads(item.arguments) for item in streamed_response.output] == [json.loads(function_call.arguments)]

# Structured output: the client's own parse() reads the answer into a pydantic model,
# whose JSON schema holds the generation; the Responses API takes the same schema.
class City(pydantic.BaseModel):
    city: str
    country: str


parsed = client.chat.completions.parse(
    **(REQUEST | {"max_tokens": 60}), response_format=City
).choices[0].message.parsed
assert isinstance(parsed, City) and parsed.city, parsed
# JSON mode, asked for in the prompt as OpenAI's documentation asks.
as_object = client.chat.completions.create(
    **(REQUEST | {"max_tokens": 40, "messages": [{"role": "user", "content": JSON_QUESTION}]}),
    response_format={"type": "json_object"},
)
assert as_object.choices[0].finish_reason == "stop", as_object
assert isinstance(json.loads(as_object.choices[0].message.content), dict), as_object
shaped = client.responses.parse(
    model=MODEL, input=QUESTION, max_output_tokens=60, temperature=0, text_format=City
)
assert isinstance(shaped.output_parsed, City), shaped

# Tool calls: even a 135M model calls a tool that exists with arguments its schema
# accepts, since the grammar holds it to them; the result goes back as a tool message.
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_REQUEST = REQUEST | {"max_tokens": 60, "messages": ASK_WEATHER, "tools": [WEATHER]}
called = client.chat.completions.create(**TOOL_REQUEST, tool_choice="required")
assert called.choices[0].finish_reason == "tool_calls", called
call = called.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and call.id, call
assert isinstance(json.loads(call.function.arguments)["city"], str), call
streamed_calls = [
    delta
    for chunk in client.chat.completions.create(**TOOL_REQUEST, tool_choice="required", stream=True)
    if chunk.choices
    for delta in chunk.choices[0].delta.tool_calls or []
]
# The call streams as OpenAI's do: its id and name first, then its arguments in pieces.
assert streamed_calls[0].id and streamed_calls[0].function.name == "get_weather", streamed_calls
assert [delta.function.name for delta in streamed_calls[1:]] == [None] * (len(streamed_calls) - 1), streamed_calls
assert len(streamed_calls) > 2 and {delta.index for delta in streamed_calls} == {0}, streamed_calls
streamed_arguments = "".join(delta.function.arguments or "" for delta in streamed_calls)
assert json.loads(streamed_arguments) == json.loads(call.function.arguments), streamed_arguments
answered = client.chat.completions.create(
    **(TOOL_REQUEST | {"messages": ASK_WEATHER + [
        called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees."},
    ]}),
)
assert answered.choices[0].finish_reason in ("stop", "tool_calls"), answered
assert answered.usage.prompt_tokens > called.usage.prompt_tokens, "the call and result were read"

# Embeddings, as the client asks for them by default (base64) and as floats: a
# paraphrase is closer than an unrelated sentence.
SENTENCES = [
    "A man is eating a piece of bread.",
    "A man is eating food.",
    "The stock market fell sharply on Monday.",
]
embedded = client.embeddings.create(model="all-minilm-l6-v2", input=SENTENCES)
vectors = [entry.embedding for entry in embedded.data]
assert [entry.index for entry in embedded.data] == [0, 1, 2], embedded
assert all(len(vector) == 384 for vector in vectors), [len(vector) for vector in vectors]
cosine = [sum(a * b for a, b in zip(vectors[0], other)) for other in vectors[1:]]
assert cosine[0] > 0.6 > 0.3 > cosine[1], cosine
assert embedded.usage.prompt_tokens == embedded.usage.total_tokens > 0, embedded.usage
as_floats = client.embeddings.create(
    model="all-minilm-l6-v2", input=SENTENCES[0], encoding_format="float"
)
assert max(abs(a - b) for a, b in zip(as_floats.data[0].embedding, vectors[0])) < 1e-6
