#!/usr/bin/env bash
# Hot-reload figures for the release binary (not a test: numbers, not pass/fail).
#   save-to-swap: write the watched script, time until `reloaded in` appears on stderr
#                 (debounce included), over 20 saves; p50 and p90.
#   start-up:     `swarm run` on a trivial blueprint, 50 runs; p50 and mean.
# Usage: benches/reload.sh [--poll]   (builds target/release/swarm first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin swarm
BIN="${CARGO_TARGET_DIR:-target}/release/swarm"
POLL="${1:-}"
exec python3 - "$BIN" "$POLL" <<'PY'
import os, subprocess, sys, tempfile, threading, time, statistics

binary, poll = os.path.abspath(sys.argv[1]), sys.argv[2]
SCRIPT = '''local swarm = require("swarm")
local F = swarm.flow
return swarm.blueprint({
  id = "bench",
  agents = { say = function() return %d end },
  flow = F.step({ agent = "say", input = F.p("$"), out = "$.said" }),
})
'''

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "x.lua")
    with open(path, "w") as f:
        f.write(SCRIPT % 0)
    args = [binary, "run", "x.lua", "--watch"] + ([poll] if poll else [])
    child = subprocess.Popen(args, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, cond = [], threading.Condition()
    def read():
        for line in child.stderr:
            with cond:
                lines.append((time.perf_counter(), line))
                cond.notify_all()
    threading.Thread(target=read, daemon=True).start()
    def wait_for(prefix, after):
        deadline = time.time() + 10
        with cond:
            while True:
                for t, line in lines[after:]:
                    if line.startswith(prefix):
                        return t
                if not cond.wait(timeout=max(0, deadline - time.time())):
                    raise SystemExit(f"no {prefix!r} within 10 s: {lines}")
    wait_for("run ", 0)
    latencies = []
    try:
        for i in range(1, 21):
            time.sleep(0.2)  # let the previous run finish and the debouncer go quiet
            with cond:
                seen = len(lines)
            start = time.perf_counter()
            with open(path, "w") as f:
                f.write(SCRIPT % i)
            latencies.append((wait_for("reloaded in", seen) - start) * 1000)
    finally:
        child.terminate()
        child.wait()
    print(f"save-to-swap ({'poll' if poll else 'events'}, 20 saves): "
          f"p50 {pct(latencies, 50):.1f} ms, p90 {pct(latencies, 90):.1f} ms, "
          f"min {min(latencies):.1f} ms, max {max(latencies):.1f} ms")

    startups = []
    for _ in range(50):
        start = time.perf_counter()
        subprocess.run([binary, "run", "x.lua"], cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        startups.append((time.perf_counter() - start) * 1000)
    print(f"swarm run start-up (trivial blueprint, 50 runs): p50 {pct(startups, 50):.1f} ms, "
          f"mean {statistics.mean(startups):.1f} ms, min {min(startups):.1f} ms")
PY
