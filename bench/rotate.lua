-- wrk script: every request carries the next token of a file (one token per line) in X-Auth-Token.
-- Usage: wrk ... -s rotate.lua URL -- TOKEN_FILE
-- The requests are formatted once in init, so the loop itself costs wrk almost nothing.
local reqs, n, i = {}, 0, 0

function init(args)
  local path = args[1]
  if path == nil or path == "" then error("rotate.lua: give the token file after --") end
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if line ~= "" then
      n = n + 1
      reqs[n] = wrk.format("GET", "/", { ["X-Auth-Token"] = line })
    end
  end
  f:close()
  if n == 0 then error("rotate.lua: no tokens in " .. path) end
end

function request()
  i = i % n + 1
  return reqs[i]
end

-- One machine-readable line: percentiles come from wrk's own latency distribution (microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
