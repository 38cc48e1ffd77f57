#!/usr/bin/env python3
"""hearth's benchmark suite: every figure hearth produces beside a baseline measured in
the same run, as a ratio (docs/BENCHMARKS.md says what each one means).

Normally started by scripts/bench.sh, which builds everything it names. Baselines:
  - llama-bench (llama.cpp's own, from the source llama-cpp-sys-2 vendors, same flags):
    prompt processing and decode through the plugin;
  - the direct program (plugins/llamacpp/examples/direct.rs, llama-cpp-2 without hearth):
    every `hearth bench` figure, so the difference is the host, the ABI and the lifecycle;
  - llama-server (same source): time to first token and decode over HTTP, and aggregate
    decode with 1, 4 and 8 concurrent streams;
  - the llama.cpp plugin for the WebGPU plugin; the MLX plugin's is named when there is one.
Standard library only.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def spread(values):
    values = [v for v in values if v == v]  # NaN: a run that produced no token
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def median(figure):
    return figure["median"] if isinstance(figure, dict) else figure


def merge(reports):
    """One report from several rounds of the same measurement: the median of the rounds'
    medians, the smallest minimum and the largest maximum; scalars by their median."""
    merged = {}
    for key, first in reports[0].items():
        values = [r[key] for r in reports]
        if isinstance(first, dict) and "median" in first:
            merged[key] = {"median": statistics.median(v["median"] for v in values),
                           "min": min(v["min"] for v in values), "max": max(v["max"] for v in values)}
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            merged[key] = statistics.median(values)
        else:
            merged[key] = first
    return merged


class ProgramFailed(Exception):
    """A measured program that crashed or failed: its name and how it ended."""


def run_json(command, env=None):
    log("  $", " ".join(str(c) for c in command))
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        if out.returncode < 0:
            ended = f"killed by {signal.Signals(-out.returncode).name}"
        else:
            ended = f"exited with status {out.returncode}"
        last = (out.stderr.strip().splitlines() or [""])[-1]
        raise ProgramFailed(f"{Path(str(command[0])).name} {ended}" + (f" ({last})" if last else ""))
    return json.loads(out.stdout)


def attempt(failures, name, measure):
    """A baseline's figures, or None when its program failed: the failure is recorded
    (and printed with the report) and the suite goes on without that baseline."""
    if name in failures:
        return None
    try:
        return measure()
    except ProgramFailed as error:
        failures[name] = str(error)
        log(f"  {name} failed: {error}; going on without it")
        return None


def model_file(catalog, models_dir, model_id):
    with open(catalog, "rb") as f:
        data = tomllib.load(f)
    for model in data.get("models", []):
        if model["id"] == model_id:
            for artifact in model["artifacts"]:
                if artifact.get("format", "gguf") == "gguf":
                    return Path(models_dir) / model_id / artifact["file"], model.get("context_size", 0)
    sys.exit(f"error: {model_id} has no GGUF artifact in {catalog}")


# ---------------------------------------------------------------------------------------
# In-process figures: hearth bench, the direct program, llama-bench.

def hearth_bench(args, backend, prompt_tokens, gen_tokens, runs, isolation="in-process"):
    return run_json([args.hearth, "--threads", str(args.threads), "bench", args.model,
                     "--backend", backend, "--runs", str(runs), "--prompt-tokens",
                     str(prompt_tokens), "--gen-tokens", str(gen_tokens), "--isolation",
                     isolation, "--json"])


def mlx_direct(binary, path, prompt_tokens, gen_tokens, runs):
    return run_json([binary, str(path), str(gen_tokens), str(prompt_tokens), str(runs)])


def direct(args, path, context, prompt_tokens, gen_tokens, runs, chat=False):
    command = [args.direct, str(path), "--threads", str(args.threads), "--context", str(context),
               "--prompt-tokens", str(prompt_tokens), "--gen-tokens", str(gen_tokens),
               "--runs", str(runs), "--json"]
    return run_json(command + (["--chat"] if chat else []))


def llama_bench(binary, args, path, prompt_tokens, gen_tokens):
    """pp at depth 0 and tg at the depth hearth decodes at (after the prompt), with the
    plugin's batch sizes; medians of llama-bench's own samples."""
    common = [binary, "-m", str(path), "-t", str(args.threads), "-b", "512", "-ub", "512",
              "-r", str(args.runs), "-o", "json"]
    pp = run_json(common + ["-p", str(prompt_tokens), "-n", "0"])[0]
    tg = run_json(common + ["-p", "0", "-n", str(gen_tokens), "-d", str(prompt_tokens)])[0]
    return {
        "prompt_tokens_per_second": spread(pp["samples_ts"]),
        "decode_tokens_per_second": spread(tg["samples_ts"]),
        "model_size": pp["model_size"],
        "cpu_info": pp.get("cpu_info"),
        "build": f'{pp.get("build_commit")} ({pp.get("build_number")})',
        "flash_attn": pp.get("flash_attn"),
    }


def memcpy_bandwidth():
    """Bytes per second one thread copies (read + write) through a 256 MiB buffer: a
    rough ceiling for a decoder that reads its weights once per token."""
    size = 256 << 20
    source, target = bytearray(size), bytearray(size)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        target[:] = source
        best = min(best, time.perf_counter() - started)
    return 2 * size / best


# ---------------------------------------------------------------------------------------
# HTTP figures: hearth serve and llama-server, streamed chat completions.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free port, stopped (by its own pid) on exit."""

    def __init__(self, name, command_for_port, ready_path, env=None):
        self.name, self.port = name, free_port()
        command = command_for_port(self.port)
        settings = " ".join(f"{key}={value}" for key, value in (env or {}).items())
        log("  $", settings, " ".join(str(c) for c in command))
        self.log = open(f"/tmp/hearth-bench-{name}-{self.port}.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"error: {name} exited; see {self.log.name}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", ready_path)
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"error: {name} did not become ready; see {self.log.name}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


def prompt_body(prompt_tokens):
    # The same text as `hearth bench` and the direct program.
    return "The quick brown fox jumps over the lazy dog. " * max(prompt_tokens // 10, 1)


def stream_chat(port, model, run, prompt_tokens, gen_tokens):
    """One streamed chat completion. Returns client-side time to the first content chunk,
    the decode rate over the chunks that followed, and the tokens the server counted."""
    body = json.dumps({
        "model": model,
        "messages": [{"role": "system", "content": f"Run {run}."},
                     {"role": "user", "content": prompt_body(prompt_tokens)}],
        "max_tokens": gen_tokens, "temperature": 0, "seed": 1, "stream": True,
        # hearth's extension field; llama-server ignores it.
        "backend": "llamacpp",
        "stream_options": {"include_usage": True},
    })
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    first = last = None
    chunks = 0
    usage = None
    for line in response:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices", []):
            if choice.get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    ended = time.perf_counter()
    connection.close()
    tokens = usage["completion_tokens"] if usage else chunks
    return {
        "first_token_ms": (first - started) * 1e3 if first else float("nan"),
        # Pieces after the first over the time between the first and the last, as `hearth
        # bench` counts; both servers send one piece per token.
        "decode_tokens_per_second": (chunks - 1) / (last - first) if first and last > first else float("nan"),
        "completion_tokens": tokens, "chunks": chunks, "started": started, "ended": ended,
    }


def http_single(port, model, args, prompt_tokens, runs):
    stream_chat(port, model, 0, prompt_tokens, args.gen_tokens)  # warm-up
    results = [stream_chat(port, model, run, prompt_tokens, args.gen_tokens) for run in range(1, runs + 1)]
    return {
        "time_to_first_token_ms": spread([r["first_token_ms"] for r in results]),
        "decode_tokens_per_second": spread([r["decode_tokens_per_second"] for r in results]),
        "completion_tokens": spread([r["completion_tokens"] for r in results]),
    }


def http_concurrent(port, model, args, streams, rounds):
    """Aggregate decode: all tokens of `streams` simultaneous chats over the wall time from
    the first request to the last answer, median over rounds."""
    rates, per_stream = [], []
    stream_chat(port, model, 0, args.http_prompt_tokens, 8)  # warm-up
    for round_ in range(rounds):
        results = [None] * streams

        def one(i):
            results[i] = stream_chat(port, model, 1000 * (round_ + 1) + i, args.http_prompt_tokens, args.gen_tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
        rates.append(sum(r["completion_tokens"] for r in results) / wall)
        per_stream += [r["decode_tokens_per_second"] for r in results]
    return {"aggregate_tokens_per_second": spread(rates), "per_stream_decode": spread(per_stream)}


def hearth_server(args, parallel=1):
    # `parallel` generations of the model at once, as llama-server's -np.
    return Server("hearth", lambda port: [args.hearth, "--threads", str(args.threads), "serve", "--port", str(port)], "/health",
                  env={"HEARTH_LLAMACPP_PARALLEL": str(parallel)})


def llama_server(args, path, slots, context):
    # The plugin's batch sizes; every slot gets the context hearth gives its one.
    return Server(f"llama-server-np{slots}", lambda port: [
        args.llama_server, "-m", str(path), "--port", str(port), "-t", str(args.threads),
        "-tb", str(args.threads), "-c", str(context * slots), "-np", str(slots), "-b", "512",
        "-ub", "512", "--no-webui", "--log-disable"], "/health")


# ---------------------------------------------------------------------------------------
# Report.

class Report:
    def __init__(self):
        self.rows, self.data = [], {}

    def row(self, section, figure, value, baseline, baseline_name, unit, target=None, higher_is_better=True):
        """`target`: (kind, number). ("ratio", r): value/baseline must be ≥ r (rates) or
        ≤ r (times); ("within", d): value may exceed baseline by at most d; ("below", x):
        value below x."""
        v, b = median(value), median(baseline) if baseline is not None else None
        ratio = v / b if b not in (None, 0) and v == v else None
        met = None
        if target:
            kind, number = target
            if kind == "ratio" and ratio is not None:
                met = ratio >= number if higher_is_better else ratio <= number
            elif kind == "within" and b is not None:
                met = v - b <= number
            elif kind == "below":
                met = v < number
        self.rows.append({"section": section, "figure": figure, "unit": unit, "value": value,
                          "baseline": baseline, "baseline_name": baseline_name, "ratio": ratio,
                          "target": target, "met": met, "higher_is_better": higher_is_better})

    def failed(self, section, baseline_name, why):
        """A baseline that could not be measured, and why (printed in its section)."""
        self.rows.append({"section": section, "figure": f"{baseline_name}: no figures", "failed": why})

    def print(self):
        def fmt(x):
            if x is None:
                return "—"
            if isinstance(x, dict):
                return f'{x["median"]:.1f} ({x["min"]:.1f}–{x["max"]:.1f})'
            return f"{x:.1f}"
        section = None
        widths = (40, 26, 26, 24, 7, 14)
        print(f'{"figure":<{widths[0]}} {"hearth":>{widths[1]}} {"baseline":>{widths[2]}} '
              f'{"baseline is":<{widths[3]}} {"ratio":>{widths[4]}}  {"target":<{widths[5]}}')
        for r in self.rows:
            if r["section"] != section:
                section = r["section"]
                print(f"\n[{section}]")
            if "failed" in r:
                print(f'{r["figure"]}: {r["failed"]}')
                continue
            target = ""
            if r["target"]:
                kind, number = r["target"]
                sign = "≥" if r["higher_is_better"] else "≤"
                target = {"ratio": f"{sign}{number}×", "within": f"+{number} {r['unit']}", "below": f"<{number} {r['unit']}"}[kind]
                target += " " + {True: "met", False: "MISSED", None: "?"}[r["met"]]
            ratio = f'{r["ratio"]:.3f}' if r["ratio"] is not None else "—"
            print(f'{r["figure"] + " (" + r["unit"] + ")":<{widths[0]}} {fmt(r["value"]):>{widths[1]}} '
                  f'{fmt(r["baseline"]):>{widths[2]}} {r["baseline_name"]:<{widths[3]}} {ratio:>{widths[4]}}  {target}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hearth", required=True)
    parser.add_argument("--direct", required=True)
    parser.add_argument("--llama-bench", required=True)
    parser.add_argument("--llama-bench-native")
    parser.add_argument("--llama-server", required=True)
    parser.add_argument("--mlx-direct", help="plugins/mlx/bench/direct_decode.cpp, built")
    parser.add_argument("--model", default="smollm2-135m", help="catalog model id")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=5, help="measured runs after one warm-up")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--http-prompt-tokens", type=int, default=64,
                        help="user-message length for the HTTP and concurrency figures")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency level")
    parser.add_argument("--interleave", type=int, default=2,
                        help="rounds of hearth bench / direct / llama-bench, alternating (engine section)")
    parser.add_argument("--only", default="engine,isolation,http,concurrency,webgpu,mlx",
                        help="comma-separated sections to run")
    parser.add_argument("--quick", action="store_true", help="2 runs, short prompts: checks the tooling, not the numbers")
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.prompt_tokens, args.gen_tokens, args.rounds, args.interleave = 2, 64, 16, 1, 1
    only = set(args.only.split(","))

    models_dir = os.environ.get("HEARTH_MODELS", str(Path.home() / ".hearth/models"))
    catalog = os.environ.get("HEARTH_CATALOG", str(ROOT / "catalog.toml"))
    path, context = model_file(catalog, models_dir, args.model)
    if not path.is_file():
        sys.exit(f"error: {path} is not installed (scripts/setup.sh installs the test models)")
    context = context or 4096
    report = Report()
    data = report.data
    data["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "model": args.model, "file": str(path),
        "threads": args.threads, "runs": args.runs, "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens, "load_average_start": os.getloadavg(),
        "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs",
    }
    log(f"== {args.model} ({path.name}), {args.threads} threads, load average {os.getloadavg()[0]:.2f}")

    if "engine" in only:
        log("== engine: hearth bench, the direct program, llama-bench")
        # Rounds alternate the programs, so a change in the machine's load falls on each.
        rounds = {"hearth_bench": [], "direct": [], "llama_bench": [], "llama_bench_native": []}
        # A baseline whose program crashes (as llama-bench built GGML_NATIVE=ON did in
        # ggml's AMX kernel on a Xeon) is reported with how it ended; the rest goes on.
        failures = data["failures"] = {}
        programs = {
            "direct": lambda: direct(args, path, context, args.prompt_tokens, args.gen_tokens, args.runs),
            "llama_bench": lambda: llama_bench(args.llama_bench, args, path, args.prompt_tokens, args.gen_tokens),
        }
        if args.llama_bench_native:
            programs["llama_bench_native"] = lambda: llama_bench(args.llama_bench_native, args, path, args.prompt_tokens, args.gen_tokens)
        for _ in range(args.interleave):
            rounds["hearth_bench"].append(hearth_bench(args, "llamacpp", args.prompt_tokens, args.gen_tokens, args.runs))
            for name, measure in programs.items():
                figures = attempt(failures, name, measure)
                if figures is not None:
                    rounds[name].append(figures)
        for name, reports in rounds.items():
            if reports and name not in failures:
                data[name] = merge(reports)
        bench, base, lb = data["hearth_bench"], data.get("direct"), data.get("llama_bench")
        data["memcpy_bytes_per_second"] = memcpy_bandwidth()
        s = "llama.cpp plugin vs llama-bench (same source, same flags)"
        if lb:
            report.row(s, f"prompt processing pp{args.prompt_tokens}", bench["prompt_tokens_per_second"], lb["prompt_tokens_per_second"], "llama-bench", "tok/s", ("ratio", 0.95))
            report.row(s, f"decode tg{args.gen_tokens} @ depth {args.prompt_tokens}", bench["decode_tokens_per_second"], lb["decode_tokens_per_second"], "llama-bench", "tok/s", ("ratio", 0.97))
        if lb and "llama_bench_native" in data:
            native = data["llama_bench_native"]
            report.row(s, "pp, GGML_NATIVE=ON build", lb["prompt_tokens_per_second"], native["prompt_tokens_per_second"], "llama-bench native", "tok/s")
            report.row(s, "tg, GGML_NATIVE=ON build", lb["decode_tokens_per_second"], native["decode_tokens_per_second"], "llama-bench native", "tok/s")
        elif not args.llama_bench_native:
            failures.setdefault("llama_bench_native", "skipped: no --llama-bench-native program given")
        for name, why in failures.items():
            report.failed(s, name, why)
        s = "hearth bench vs the direct llama-cpp-2 program (plugin + ABI + host)"
        base = base or {}
        if not base:
            report.failed(s, "direct", failures.get("direct", "not measured"))
        report.row(s, "load", bench["load_ms"], base.get("load_ms"), "direct", "ms", higher_is_better=False)
        report.row(s, "time to first token", bench["time_to_first_token_ms"], base.get("time_to_first_token_ms"), "direct", "ms", higher_is_better=False)
        report.row(s, "prompt processing", bench["prompt_tokens_per_second"], base.get("prompt_tokens_per_second"), "direct", "tok/s")
        report.row(s, "decode", bench["decode_tokens_per_second"], base.get("decode_tokens_per_second"), "direct", "tok/s")
        report.row(s, "first token after trim", bench["reload_from_trimmed_first_token_ms"], base.get("reload_from_trimmed_first_token_ms"), "direct", "ms", ("below", 30), False)
        report.row(s, "first token after unload", bench["reload_from_unloaded_first_token_ms"], base.get("reload_from_unloaded_first_token_ms"), "direct", "ms", ("below", 250), False)
        mb = lambda x: x / 1e6
        grown = lambda r, stage: mb(r[f"resident_bytes_{stage}"] - r["resident_bytes_before_load"]) if r else None
        report.row(s, "RSS growth at load", grown(bench, "after_load"), grown(base, "after_load"), "direct", "MB", higher_is_better=False)
        report.row(s, "RSS after trim − before load", grown(bench, "after_trim"), grown(base, "after_trim"), "direct", "MB", higher_is_better=False)
        report.row(s, "RSS after unload − before load", grown(bench, "after_unload"), grown(base, "after_unload"), "direct", "MB", ("within", 5), False)
        if lb:
            s = "ceiling: decode reads every weight once per token"
            ceiling = data["memcpy_bytes_per_second"] / lb["model_size"]
            report.row(s, "llama-bench tg vs weights ÷ 1-thread memcpy bandwidth", lb["decode_tokens_per_second"], ceiling, "bandwidth ceiling", "tok/s")

    if "isolation" in only:
        log("== isolation: hearth bench in a worker process vs in process")
        rounds = {"process": [], "in-process": []}
        for _ in range(args.interleave):
            for mode in rounds:
                rounds[mode].append(hearth_bench(args, "llamacpp", args.prompt_tokens, args.gen_tokens, args.runs, mode))
        worker, inside = merge(rounds["process"]), merge(rounds["in-process"])
        data["isolation_process"], data["isolation_in_process"] = worker, inside
        s = "isolation: the llama.cpp plugin in a worker process vs in the host process (hearth bench)"
        report.row(s, "load", worker["load_ms"], inside["load_ms"], "in-process", "ms", higher_is_better=False)
        report.row(s, "time to first token", worker["time_to_first_token_ms"], inside["time_to_first_token_ms"], "in-process", "ms", higher_is_better=False)
        report.row(s, "decode (in the backend)", worker["decode_tokens_per_second"], inside["decode_tokens_per_second"], "in-process", "tok/s")
        report.row(s, "decode (as the host receives it)", worker["streamed_tokens_per_second"], inside["streamed_tokens_per_second"], "in-process", "tok/s")
        report.row(s, "first token after unload", worker["reload_from_unloaded_first_token_ms"], inside["reload_from_unloaded_first_token_ms"], "in-process", "ms", higher_is_better=False)
        mb = lambda x: x / 1e6
        report.row(s, "RSS after unload − before load", mb(worker["resident_bytes_after_unload"] - worker["resident_bytes_before_load"]), mb(inside["resident_bytes_after_unload"] - inside["resident_bytes_before_load"]), "in-process", "MB", higher_is_better=False)

    if "http" in only:
        log("== http: hearth serve vs the direct program and llama-server, streamed chat")
        runs = args.runs
        direct_chat = data["direct_chat"] = direct(args, path, context, args.http_prompt_tokens, args.gen_tokens, runs, chat=True)
        with hearth_server(args) as server:
            via_hearth = data["http_hearth"] = http_single(server.port, args.model, args, args.http_prompt_tokens, runs)
        with llama_server(args, path, 1, context) as server:
            via_llama = data["http_llama_server"] = http_single(server.port, args.model, args, args.http_prompt_tokens, runs)
        s = "HTTP: POST /v1/chat/completions, streamed, one client"
        report.row(s, "time to first token vs direct", via_hearth["time_to_first_token_ms"], direct_chat["time_to_first_token_ms"], "direct (in process)", "ms", ("within", 5), False)
        report.row(s, "time to first token vs llama-server", via_hearth["time_to_first_token_ms"], via_llama["time_to_first_token_ms"], "llama-server -np 1", "ms", higher_is_better=False)
        report.row(s, "decode vs direct", via_hearth["decode_tokens_per_second"], direct_chat["decode_tokens_per_second"], "direct (in process)", "tok/s")
        report.row(s, "decode vs llama-server", via_hearth["decode_tokens_per_second"], via_llama["decode_tokens_per_second"], "llama-server -np 1", "tok/s")

    if "concurrency" in only:
        log("== concurrency: aggregate decode through the HTTP API")
        levels = [int(n) for n in args.concurrency.split(",")]
        data["concurrency"] = {}
        hearth_levels = {}
        for n in levels:
            with hearth_server(args, parallel=n) as server:
                hearth_levels[n] = http_concurrent(server.port, args.model, args, n, args.rounds)
        s = "HTTP concurrency: aggregate decode (all streams' tokens ÷ wall time), HEARTH_LLAMACPP_PARALLEL=N"
        for n in levels:
            with llama_server(args, path, n, min(context, 2048)) as server:
                llama_level = http_concurrent(server.port, args.model, args, n, args.rounds)
            data["concurrency"][n] = {"hearth": hearth_levels[n], "llama_server": llama_level}
            report.row(s, f"{n} stream{'s' if n > 1 else ''}", hearth_levels[n]["aggregate_tokens_per_second"], llama_level["aggregate_tokens_per_second"], f"llama-server -np {n}", "tok/s")

    plugins = Path(os.environ.get("HEARTH_PLUGINS", str(Path.home() / ".hearth/plugins")))
    if "webgpu" in only:
        if (plugins / "libhearth_webgpu.so").exists():
            log("== webgpu: hearth bench --backend webgpu vs --backend llamacpp")
            # Short: on a CPU Vulkan device (lavapipe) the WebGPU backend is slow.
            p, g, r = 64, 32, max(2, args.runs // 2)
            gpu = data["webgpu"] = hearth_bench(args, "webgpu", p, g, r)
            cpu = data["webgpu_baseline_llamacpp"] = hearth_bench(args, "llamacpp", p, g, r)
            s = f"WebGPU plugin vs llama.cpp plugin (hearth bench, {p} prompt / {g} generated tokens)"
            for key, name, unit, hib in [("load_ms", "load", "ms", False), ("time_to_first_token_ms", "time to first token", "ms", False),
                                          ("prompt_tokens_per_second", "prompt processing", "tok/s", True), ("decode_tokens_per_second", "decode", "tok/s", True)]:
                report.row(s, name, gpu[key], cpu[key], "llama.cpp plugin", unit, higher_is_better=hib)
        else:
            data["webgpu"] = f"no libhearth_webgpu.so in {plugins}"
    if "mlx" in only:
        if not (plugins / "libhearth_mlx.so").exists():
            data["mlx"] = f"no libhearth_mlx.so in {plugins}"
        elif not args.mlx_direct:
            data["mlx"] = "no --mlx-direct program given"
        else:
            log("== mlx: hearth bench --backend mlx vs the direct libmlx program")
            # Short: MLX's CPU device is far slower than llama.cpp's kernels.
            p, g, r = 64, 32, max(2, args.runs // 2)
            plugin = data["mlx_plugin"] = hearth_bench(args, "mlx", p, g, r)
            direct_mlx = data["mlx_direct"] = mlx_direct(args.mlx_direct, path, p, g, r)
            s = f"MLX plugin vs a direct libmlx program (same graph, {p} prompt / {g} generated tokens)"
            report.row(s, "prompt processing", plugin["prompt_tokens_per_second"], direct_mlx["prompt_tokens_per_second"], "direct libmlx", "tok/s")
            report.row(s, "decode", plugin["decode_tokens_per_second"], direct_mlx["decode_tokens_per_second"], "direct libmlx", "tok/s")
            report.row(s, "tokens generated by the plugin (median)", median(plugin["gen_tokens"]), g, "asked for", "tokens")
            data["mlx"] = "measured"

    data["meta"]["load_average_end"] = os.getloadavg()
    data["rows"] = report.rows
    report.print()
    print(f"\nload average at start {data['meta']['load_average_start'][0]:.2f}, at end {data['meta']['load_average_end'][0]:.2f}; "
          f"ratios are hearth ÷ baseline. {data.get('webgpu') if isinstance(data.get('webgpu'), str) else ''} "
          f"MLX: {data.get('mlx', 'not run')}")
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    main()
