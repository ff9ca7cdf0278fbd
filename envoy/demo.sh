#!/usr/bin/env bash
# The tokengate demo: the key service, a sample function and the real Envoy with the filter,
# then a curl walkthrough. `make demo` builds everything first and runs this.
# DEMO_ONCE=1: exit after the walkthrough, 0 only if every step gave the expected status.
# DEMO_SERVICES=external: the services already run (envoy/docker-compose.yaml); only walk through.
set -euo pipefail

cd "$(dirname "$0")/.."
ENVOY=${ENVOY_BIN:-.venv/bin/envoy}
TOKENGATE=${TOKENGATE_BIN:-target/release/tokengate}
WASM=target/wasm32-wasip1/release/tokengate.wasm
RUN=.run/demo
URL=http://127.0.0.1:10000

export TOKENGATE_URL=http://127.0.0.1:8081
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${DEMO_SERVICES:-}" != external ]; then
  for need in "$ENVOY" "$TOKENGATE" "$WASM"; do
    [ -f "$need" ] || { echo "missing $need: run 'make demo' (it builds and installs everything)" >&2; exit 2; }
  done
  for port in 8080 8081 9901 10000; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is already in use: stop whatever listens there (an earlier demo?)" >&2; exit 2
    fi
  done
  rm -rf "$RUN" && mkdir -p "$RUN"
  export TOKENGATE_ADMIN_TOKEN=${TOKENGATE_ADMIN_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  "$TOKENGATE" serve --listen 127.0.0.1:8081 --data-dir "$RUN/data" >"$RUN/keys.log" 2>&1 & pids+=($!)
  python3 envoy/function.py --port 8080 >"$RUN/function.log" 2>&1 & pids+=($!)
  "$ENVOY" -c envoy/envoy.yaml --concurrency 2 --base-id 42 --log-path "$RUN/envoy.log" \
    --component-log-level wasm:debug >/dev/null 2>&1 & pids+=($!)
fi

for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:9901/ready >/dev/null 2>&1 && curl -sf "$TOKENGATE_URL/v1/namespaces/demo/jwks.json" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf http://127.0.0.1:9901/ready >/dev/null || { echo "Envoy is not ready (log: $RUN/envoy.log)" >&2; exit 1; }

failed=0
# step TITLE EXPECTED_STATUS [TOKEN]: one curl through Envoy, shown with its answer.
step() {
  local title=$1 want=$2 token=${3-} got body shown
  if [ $# -ge 3 ]; then
    shown="curl -s -H 'X-Auth-Token: ${token:0:12}…' $URL/hello"
    body=$(curl -s -o - -w '\n%{http_code}' -H "X-Auth-Token: $token" "$URL/hello")
  else
    shown="curl -s $URL/hello"
    body=$(curl -s -o - -w '\n%{http_code}' "$URL/hello")
  fi
  got=${body##*$'\n'}; body=${body%$'\n'*}; body=${body%$'\n'}
  printf '\n# %s\n$ %s\n%s %s\n' "$title" "$shown" "$got" "$body"
  if [ "$got" = "$want" ]; then echo "ok: $want as expected"; else echo "FAILED: expected $want"; failed=1; fi
}

create() { # create ARGS...: prints "ID TOKEN"
  "$TOKENGATE" token create --output json "$@" | python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["id"], t["token"])'
}

echo "tokengate demo: Envoy on $URL protects function 'hello' of namespace 'demo'"
step "No token: the filter answers 403 itself" 403
step "Garbage instead of a token" 403 "not-a-jwt"

echo; echo "$ tokengate token create --namespace demo --function hello --description 'demo token' --expires-in 30d"
read -r TOKEN_ID TOKEN < <(create --namespace demo --function hello --description "demo token" --expires-in 30d)
step "A fresh token for 'hello' (accepted at once: its new key is fetched on first sight)" 200 "$TOKEN"

read -r _ OTHER < <(create --namespace demo --function other --description "token for another function" --no-expiration)
step "A token for another function of the namespace" 403 "$OTHER"

read -r _ NS < <(create --namespace demo --description "namespace-wide token" --no-expiration)
step "A namespace token (no expiry): good for every function of 'demo'" 200 "$NS"

read -r _ SHORT < <(create --namespace demo --function hello --description "short-lived" --expires-in 2s)
step "A token that expires in 2 s, used at once" 200 "$SHORT"
sleep 4
step "The same token 4 s later: expired" 403 "$SHORT"

echo; echo "$ tokengate token list --namespace demo"
"$TOKENGATE" token list --namespace demo

echo; echo "$ tokengate token delete $TOKEN_ID --yes"
"$TOKENGATE" token delete "$TOKEN_ID" --yes
echo "(the filter refreshes its keys every 10 s; waiting for the deletion to take effect)"
for _ in $(seq 1 30); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $TOKEN" "$URL/hello")" = 403 ] && break
  sleep 0.5
done
step "The deleted token: revoked for good" 403 "$TOKEN"

echo
if [ "$failed" = 0 ]; then echo "Every step gave the expected status."; else echo "Some steps FAILED (logs in $RUN/)."; fi
if [ "${DEMO_ONCE:-0}" = 1 ]; then exit "$failed"; fi
echo "Envoy, the key service and the function keep running; try your own curl. Ctrl-C stops them."
echo "  export PATH=$PWD/target/release:\$PATH TOKENGATE_URL=$TOKENGATE_URL TOKENGATE_ADMIN_TOKEN=$TOKENGATE_ADMIN_TOKEN"
echo "Or open the tokens console at $TOKENGATE_URL/console and sign in with that admin token."
wait
