#!/usr/bin/env python3
"""Many streaming clients at once against a real `hearth serve`, with the default
max_tokens: the load under which the stall timer once killed healthy workers (issue 15).

Starts `hearth serve` on a loopback port with the installed home, sends CLIENTS chat
requests at once (streaming, no max_tokens, temperature 0), and prints how many
answered, how many failed and why, tokens generated and first-token/total latencies.
Exits 1 when any request failed. Standard library only.

    python3 scripts/concurrent_clients.py [--clients 32] [--model smollm2-135m]
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

QUESTIONS = [
    "Why is the sky blue?",
    "Tell me about the moon.",
    "How do plants grow?",
    "What is a computer?",
]


def start_server(hearth, max_queue):
    server = subprocess.Popen(
        [hearth, "serve", "--port", "0", "--max-queue", str(max_queue)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HEARTH_LOG": "info"},
    )
    log = []
    address = None
    while address is None:
        line = server.stderr.readline()
        if not line:
            sys.exit("hearth serve exited before listening:\n" + "".join(log))
        log.append(line)
        found = re.search(r"address=(\S+)", line)
        if found:
            address = found.group(1)
    threading.Thread(target=lambda: log.extend(server.stderr), daemon=True).start()
    return server, address, log


def ask(address, model, question):
    """One streaming request; returns (error or None, tokens, first-token s, total s)."""
    host, port = address.rsplit(":", 1)
    body = json.dumps({"model": model, "stream": True, "temperature": 0,
                       "messages": [{"role": "user", "content": question}]})
    started = time.monotonic()
    first = None
    pieces = 0
    try:
        connection = http.client.HTTPConnection(host, int(port), timeout=3600)
        connection.request("POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return f"HTTP {response.status}: {response.read()[:300]!r}", 0, None, None
        done = False
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                return f"stream error: {event['error'].get('message')}", pieces, first, None
            delta = event["choices"][0]["delta"].get("content")
            if delta:
                pieces += 1
                first = first or time.monotonic() - started
        if not done:
            return "the stream ended without [DONE]", pieces, first, None
        if pieces == 0:
            return "an empty answer", 0, None, None
        return None, pieces, first, time.monotonic() - started
    except OSError as error:
        return f"connection: {error}", pieces, first, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--hearth", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/hearth/target")),
        "release", "hearth"))
    args = parser.parse_args()
    server, address, log = start_server(args.hearth, max(64, args.clients * 2))
    results = [None] * args.clients

    def client(index):
        results[index] = ask(address, args.model, QUESTIONS[index % len(QUESTIONS)])

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    alive = server.poll() is None
    server.terminate()
    server.wait()

    failures = {}
    for error, *_ in results:
        if error:
            cause = re.sub(r"\d+", "N", error)[:160]
            failures[cause] = failures.get(cause, 0) + 1
    answered = [r for r in results if r[0] is None]
    tokens = sum(r[1] for r in results)
    firsts = sorted(r[2] for r in answered)
    totals = sorted(r[3] for r in answered)
    print(f"{args.clients} streaming clients, default max_tokens, model {args.model}: "
          f"{len(answered)} answered, {args.clients - len(answered)} failed {failures or ''}")
    if answered:
        print(f"  {tokens} pieces in {wall:.0f} s ({tokens / wall:.1f}/s over all clients); "
              f"first token median {statistics.median(firsts):.1f} s, max {firsts[-1]:.1f} s; "
              f"answer median {statistics.median(totals):.1f} s, max {totals[-1]:.1f} s")
    print(f"  server still running at the end: {alive}")
    stalls = [line.strip() for line in log if "stall" in line]
    if stalls:
        print("  stall lines in the server log:\n    " + "\n    ".join(stalls[:5]))
    sys.exit(0 if len(answered) == args.clients and alive else 1)


if __name__ == "__main__":
    main()
