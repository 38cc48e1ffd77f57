"""The `anthropic` Python client against `hearth serve` (argv[1]) with SmolLM2: answers
with a system prompt, streams the same text, counts the prompt's tokens as the answer's
usage does, calls a tool (whole and streamed) and reads its result, and is refused a
server tool by name."""

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
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = REQUEST | {
    "max_tokens": 60,
    "system": "You help with the weather.",
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    "tools": [weather],
}
called = client.messages.create(**ASK, tool_choice={"type": "any"})
assert called.stop_reason == "tool_use", called
use = next(block for block in called.content if block.type == "tool_use")
assert use.name == "get_weather" and isinstance(use.input["city"], str) and use.id, use
with client.messages.stream(**ASK, tool_choice={"type": "tool", "name": "get_weather"}) as stream:
    input_pieces = [event.partial_json for event in stream if event.type == "input_json"]
    streamed_call = stream.get_final_message()
assert [block.input for block in streamed_call.content if block.type == "tool_use"] == [use.input]
assert len(input_pieces) > 1, f"the call's input arrived whole: {input_pieces}"
answered = client.messages.create(**(ASK | {"messages": ASK["messages"] + [
    {"role": "assistant", "content": [block.model_dump() for block in called.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny."}]},
]}))
assert answered.stop_reason in ("end_turn", "tool_use", "max_tokens"), answered
assert answered.usage.input_tokens > called.usage.input_tokens, "the call and result were read"
counted = client.messages.count_tokens(model=MODEL, system=ASK["system"], messages=ASK["messages"], tools=[weather])
assert counted.input_tokens == client.messages.create(**ASK).usage.input_tokens, counted

try:
    client.messages.create(**REQUEST, tools=[{"type": "web_search_20250305", "name": "web_search"}])
except anthropic.BadRequestError as error:
    assert error.status_code == 400 and "`tools[]`" in error.message, error
    assert error.body["error"]["type"] == "invalid_request_error", error.body
else:
    raise AssertionError("a server tool was answered")
