#!/usr/bin/env bash
# The remote-worker exchange with curl over the API's Unix socket: serve, start a run, claim its
# remote attempt, read the prompt, report progress, post the result, read the run back.
# Run from the repository root with swarm on PATH: bash examples/serve/remote_curl.sh (needs curl, python3).
set -euo pipefail
dir=$(mktemp -d)
sock="$dir/api.sock"
swarm serve examples/serve/remote.lua --listen "unix:$sock" 2>"$dir/serve.log" &
serve=$!
trap 'kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null; rm -rf "$dir"' EXIT
while [ ! -S "$sock" ]; do sleep 0.1; done
token=$(cat examples/serve/.swarm/operator.token)
api() { curl -sS --unix-socket "$sock" -H "Authorization: Bearer $1" "http://localhost$2" "${@:3}"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

run=$(api "$token" /v1/runs -d '{"blueprint":"count_words","input":{"text":"the quick brown fox"}}' | field '["run_id"]')
echo "started $run"
claim=$(api "$token" /v1/work/claim -d '{"queues":["words"],"wait_ms":5000}')
task=$(echo "$claim" | field '["task_id"]')
worker=$(echo "$claim" | field '["token"]')
echo "claimed $task: $(echo "$claim" | field '["input"]')"
api "$worker" "/v1/tasks/$task/prompt"; echo
api "$worker" "/v1/tasks/$task/events" -d '[{"type":"progress","stage":"counting"}]'
api "$worker" "/v1/tasks/$task/result" -d '{"value":{"words":4,"longest":"quick"},"ok":true}'
until api "$token" "/v1/runs/$run" | field '["status"]' | grep -q finished; do sleep 0.1; done
api "$token" "/v1/runs/$run" | field '["ctx"]["report"]'
