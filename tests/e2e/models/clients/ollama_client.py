"""The `ollama` Python client against `hearth serve` (argv[1]) with SmolLM2 installed:
lists, shows, chats and generates (streamed and not), sees the loaded model in `ps`,
embeds with all-MiniLM-L6-v2, holds answers to JSON and to a schema (`format`), calls a tool and reads its result, and is
refused what hearth does not implement, by name."""

import json
import sys

import ollama

MODEL = "smollm2-135m"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 12}
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]

client = ollama.Client(host=sys.argv[1])

# This version of the client has no call for `/api/version`; its own transport asks.
assert client._client.get("/api/version").json()["version"], "version is empty"

listed = {model.model: model for model in client.list().models}
assert MODEL in listed, f"{MODEL} not listed: {sorted(listed)}"
assert listed[MODEL].size > 0 and listed[MODEL].details.family == "llama", listed[MODEL]
assert listed[MODEL].details.quantization_level == "Q4_1", listed[MODEL].details

shown = client.show(MODEL)
assert shown.capabilities == ["completion"], shown.capabilities
assert shown.modelinfo["llama.context_length"] > 0, shown.modelinfo

whole = client.chat(model=MODEL, messages=QUESTION, options=GREEDY)
assert whole.message.role == "assistant" and whole.message.content.strip(), whole
assert whole.done and whole.done_reason in ("stop", "length"), whole
assert whole.eval_count > 0 and whole.prompt_eval_count > 0, whole
assert whole.total_duration >= whole.eval_duration > 0, whole

chunks = list(client.chat(model=MODEL, messages=QUESTION, options=GREEDY, stream=True))
assert chunks[-1].done and not any(chunk.done for chunk in chunks[:-1]), chunks
streamed = "".join(chunk.message.content for chunk in chunks)
assert streamed == whole.message.content, (streamed, whole.message.content)

generated = client.generate(model=MODEL, prompt="Name a colour.", options=GREEDY)
assert generated.response.strip() and generated.done, generated
pieces = list(client.generate(model=MODEL, prompt="Name a colour.", options=GREEDY, stream=True))
assert "".join(piece.response for piece in pieces) == generated.response, pieces

running = {model.model: model for model in client.ps().models}
assert MODEL in running, f"{MODEL} not in ps: {client.ps()}"
assert running[MODEL].size > 0 and running[MODEL].details.family == "llama", running[MODEL]

EMBEDDER = "all-minilm-l6-v2"
assert client.show(EMBEDDER).capabilities == ["embedding"], client.show(EMBEDDER)
embedded = client.embed(model=EMBEDDER, input=["A man is eating food.", "A man eats bread."])
assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 384, embedded
assert embedded.prompt_eval_count > 0, embedded
single = client.embed(model=EMBEDDER, input="A man is eating food.")
assert single.embeddings[0] == embedded.embeddings[0], "one text embeds as it does in a list"
# keep_alive 0 unloads it after answering, as Ollama does, so `ps` below sees none.
older = client.embeddings(model=EMBEDDER, prompt="A man is eating food.", keep_alive=0)
assert len(older.embedding) == 384, older

# `format` holds the answer to JSON, or to a schema, even on a 135M model.
# Asked for in the prompt too, as Ollama's documentation asks.
JSON_QUESTION = [{"role": "user", "content": "Reply in JSON with the keys city and country: what is the capital of France?"}]
as_json = client.chat(model=MODEL, messages=JSON_QUESTION, format="json", options=GREEDY | {"num_predict": 40})
assert as_json.done_reason == "stop", as_json
assert isinstance(json.loads(as_json.message.content), dict), as_json
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
called = client.chat(model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], options=GREEDY | {"num_predict": 60})
call = called.message.tool_calls[0]
assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str), called
answered = client.chat(
    model=MODEL,
    messages=ASK_WEATHER + [called.message, {"role": "tool", "tool_name": "get_weather", "content": "Sunny."}],
    tools=[WEATHER],
    options=GREEDY | {"num_predict": 60},
)
assert answered.message.content.strip() or answered.message.tool_calls, answered
assert answered.prompt_eval_count > called.prompt_eval_count, "the call and result were read"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
by_schema = client.generate(model=MODEL, prompt="Name a city.", format=CITY, options=GREEDY | {"num_predict": 40})
assert isinstance(json.loads(by_schema.response)["city"], str), by_schema

try:
    client.chat(model=MODEL, messages=QUESTION, options={"mirostat": 2})
except ollama.ResponseError as error:
    assert error.status_code == 400 and "options.mirostat" in error.error, error
else:
    raise AssertionError("a `mirostat` request was answered")

unloaded = client.generate(model=MODEL, keep_alive=0)
assert unloaded.done_reason == "unload", unloaded
assert not client.ps().models, client.ps()
