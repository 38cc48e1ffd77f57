"""The `openai` Python client against `hearth serve` (argv[1]) with SmolLM2 whose GGUF
carries Qwen2.5's chat template, which knows tools (the Hermes format): the tools reach
the template, the grammar holds the answer to `<tool_call>` blocks, and the client gets
the calls, whole and streamed; the call and its result go back through the template."""

import json
import sys
import urllib.request

import openai

MODEL = "smollm2-135m"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
REQUEST = {"model": MODEL, "temperature": 0, "max_tokens": 60, "messages": ASK_WEATHER}

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)

called = client.chat.completions.create(**REQUEST, tools=[WEATHER], tool_choice="required")
assert called.choices[0].finish_reason == "tool_calls", called
assert not called.choices[0].message.content, called
call = called.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and call.id, call
arguments = json.loads(call.function.arguments)
assert isinstance(arguments["city"], str), call

# Several tools, calls allowed in parallel: every call names a listed tool, and the
# stream carries each call's id and name once, then its arguments, under its index.
deltas = [
    delta
    for chunk in client.chat.completions.create(
        **REQUEST, tools=[WEATHER, TIME], tool_choice="required", stream=True
    )
    if chunk.choices
    for delta in chunk.choices[0].delta.tool_calls or []
]
started = [delta for delta in deltas if delta.id]
assert started and all(d.function.name in ("get_weather", "get_time") for d in started), deltas
assert [d.index for d in started] == list(range(len(started))), deltas
for index in range(len(started)):
    joined = "".join(d.function.arguments or "" for d in deltas if d.index == index)
    assert isinstance(json.loads(joined), dict), (index, joined)

# A named tool is the one called, once when calls may not go in parallel.
named = client.chat.completions.create(
    **REQUEST,
    tools=[WEATHER, TIME],
    tool_choice={"type": "function", "function": {"name": "get_time"}},
    parallel_tool_calls=False,
)
assert [c.function.name for c in named.choices[0].message.tool_calls] == ["get_time"], named

# The calls and the result go back through the template: the prompt has as many tokens
# as the one Qwen2.5's template writes for them (the API reports no prompt text). Calls
# may go in parallel, so the message holds every call the model made (SmolLM2 makes two
# here), each a block of its own.
RESULT = "Sunny, 21 degrees."
answered = client.chat.completions.create(
    **(REQUEST | {"max_tokens": 1, "messages": ASK_WEATHER + [
        called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": RESULT},
    ]}),
    tools=[WEATHER],
)
calls = "".join(
    "\n<tool_call>\n"
    + json.dumps({"name": c.function.name, "arguments": json.loads(c.function.arguments)})
    + "\n</tool_call>"
    for c in called.choices[0].message.tool_calls
)
expected = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    + json.dumps(WEATHER)
    + "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
    f"<|im_start|>assistant{calls}<|im_end|>\n"
    f"<|im_start|>user\n<tool_response>\n{RESULT}\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
)
tokenize = urllib.request.Request(
    sys.argv[1] + "/tokenize",
    data=json.dumps({"model": MODEL, "content": expected, "add_special": True}).encode(),
    headers={"Content-Type": "application/json"},
)
tokens = json.load(urllib.request.urlopen(tokenize))["tokens"]
assert answered.usage.prompt_tokens == len(tokens), (answered.usage, len(tokens))
