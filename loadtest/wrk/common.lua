-- Shared by every wrk script in this folder: reading seed files, pacing, and one machine-readable
-- RESULT line at the end that loadtest/run parses (wrk's own text stays on stdout above it).

common = {}

-- The lines of a file (ids or numbers), read once per thread in init().
function common.lines(path)
  local out = {}
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then out[#out + 1] = line end
  end
  file:close()
  assert(#out > 0, path .. " is empty")
  return out
end

-- Every request carries the account key and a JSON content type.
function common.headers()
  wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("OTPGATE_KEY"), "OTPGATE_KEY is not set")
  wrk.headers["Content-Type"] = "application/json"
end

-- Threads number themselves in setup() (main state) so each can take its own slice of numbers.
local next_thread = 0
function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

-- WRK_DELAY_MS paces each connection (the soak runs at a moderate, steady rate); unset: flat out.
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay() return delay_ms end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
