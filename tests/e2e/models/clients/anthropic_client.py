"""The `anthropic` Python client against `hearth serve` (argv[1]) with SmolLM2: answers
with a system prompt, streams the same text, counts the prompt's tokens as the answer's
usage does, and is refused `tools` by name."""

import sys

import anthropic

MODEL = "smollm2-135m"
REQUEST = {
    "model": MODEL,
    "max_tokens": 12,
    "system": "You answer in one word.",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    # This version of the client has no keyword for the sampling fields the API takes.
    "extra_body": {"temperature": 0},
}

client = anthropic.Anthropic(base_url=sys.argv[1], api_key="unused", max_retries=0)

message = client.messages.create(**REQUEST)
text = "".join(block.text for block in message.content if block.type == "text")
assert message.role == "assistant" and text.strip(), message
assert message.stop_reason in ("end_turn", "max_tokens"), message
assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage

with client.messages.stream(**REQUEST) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
assert streamed == text, (streamed, text)
assert final.stop_reason == message.stop_reason, final
assert final.usage.input_tokens == message.usage.input_tokens, final.usage
assert final.usage.output_tokens == message.usage.output_tokens, final.usage

counted = client.messages.count_tokens(
    model=MODEL, system=REQUEST["system"], messages=REQUEST["messages"]
)
assert counted.input_tokens == message.usage.input_tokens, (counted, message.usage)

weather = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
try:
    client.messages.create(**REQUEST, tools=[weather])
except anthropic.BadRequestError as error:
    assert error.status_code == 400 and "`tools`" in error.message, error
    assert error.body["error"]["type"] == "invalid_request_error", error.body
else:
    raise AssertionError("a `tools` request was answered")
