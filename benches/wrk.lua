-- wrk script for benches/run.sh: spreads GET requests over the paths listed in a file
-- (one per line), each wrk thread starting at a different offset, and prints a one-line
-- JSON summary (prefixed WRKJSON) for the report.
--   wrk -t2 -c64 -d10s --latency -s benches/wrk.lua http://127.0.0.1:PORT -- paths.txt

local paths = {}
local counter = 0
local thread_no = 0

setup = function(thread)
  thread:set("thread_no", thread_no)
  thread_no = thread_no + 1
end

init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then paths[#paths + 1] = line end
  end
  f:close()
  counter = ((thread_no or 0) * 7919) % #paths
end

request = function()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter])
end

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout))
end
