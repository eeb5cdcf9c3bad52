"""wrk as the benchmark's load generator, when the machine has it (Debian package ``wrk``).

A C generator costs the shared cores far less than the aiohttp one (``benchmarks.loadgen``),
so more of the machine is left to the server under test. Purchases need a Lua script: every
request gets its own ``Idempotency-Key`` (a run id, the wrk thread and a counter, so reruns
never replay an earlier order) and the next buyer's bearer token. The script counts statuses
per thread and prints one JSON line at the end, which ``run`` turns into the same result
dict the aiohttp generator writes (plus wrk's own latency percentiles).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Spec

MARK = "WRK_JSON "

_SCRIPT = r"""
local tokens = {%(tokens)s}
local options = {%(options)s}
local mode = "%(mode)s"
local path = "%(path)s"
local run_id = "%(run_id)s"
local quantity = %(quantity)d
threads = {}
statuses = {}
thread_no = 0
counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  math.randomseed(thread_no * 7919 + os.time())
  prefix = run_id .. "-" .. thread_no .. "-"
end

function request()
  counter = counter + 1
  local token = tokens[(counter * 7 + thread_no) %% #tokens + 1]
  local headers = {["Authorization"] = "Bearer " .. token}
  if mode ~= "purchase" then
    return wrk.format("GET", path, headers)
  end
  local option = options[1]
  if #options > 1 then option = options[math.random(#options)] end
  headers["Idempotency-Key"] = prefix .. counter
  headers["Content-Type"] = "application/json"
  local body = '{"lines":[{"option_id":' .. option .. ',"quantity":' .. quantity ..
    '}],"payment_method":"card","shipping_address":"1 Benchmark Way, Testville"}'
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("statuses")) do merged[key] = (merged[key] or 0) + n end
  end
  local parts = {}
  for key, n in pairs(merged) do table.insert(parts, '"' .. key .. '":' .. n) end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"elapsed_us":%%d,"requests":%%d,"statuses":{%%s},"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"p50_us":%%d,"p95_us":%%d,"p99_us":%%d}\n',
    summary.duration, summary.requests, table.concat(parts, ","), e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99)))
end
"""


def available() -> str | None:
    """The wrk binary, or None: the caller then falls back to its own generator."""
    return shutil.which("wrk")


def script(spec: Spec) -> str:
    return _SCRIPT % {
        "tokens": ",".join(json.dumps(token) for token in spec.tokens),
        "options": ",".join(str(int(option)) for option in spec.option_ids) or "0",
        "mode": spec.method,
        "path": spec.path,
        "run_id": uuid.uuid4().hex[:12],
        "quantity": spec.quantity,
        "mark": MARK,
    }


def run(spec: Spec, binary: str) -> dict[str, Any]:
    """Drive ``spec`` (a duration, never a total: wrk cannot stop after N requests)."""
    if spec.duration is None:
        raise ValueError("wrk runs for a duration; a fixed total needs benchmarks.loadgen")
    threads = max(1, min(2, spec.concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp, "bench.lua")
        lua.write_text(script(spec))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [binary, "-t", str(threads), "-c", str(spec.concurrency),
             "-d", f"{spec.duration:g}s", "--timeout", f"{spec.timeout:g}s",
             "-s", str(lua), spec.base_url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line[len(MARK) :])
    elapsed = raw["elapsed_us"] / 1e6
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "generator": "wrk",
        "elapsed_s": elapsed,
        "statuses": {str(k): int(v) for k, v in raw["statuses"].items()},
        "timeouts": raw["timeout"],
        "transport_errors": raw["connect"] + raw["read"] + raw["write"],
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p95_ms": round(raw["p95_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        # wrk runs ``threads`` threads: the share of one core, as loadgen reports it.
        "client_cpu_fraction": cpu / elapsed / threads if elapsed else 0.0,
    }
