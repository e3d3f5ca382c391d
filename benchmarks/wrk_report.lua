-- wrk hooks for benchmarks/loadgen.py: count non-2xx responses (by status) and replayed
-- writes in every thread and, when the run is over, print one line "WRK_JSON {...}" with
-- throughput, latency (ms) and errors.
-- wrk itself counts only status >= 400 as errors; non_2xx also counts 1xx and 3xx.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
  statuses = {}
  replayed = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
  if headers["idempotent-replayed"] or headers["Idempotent-Replayed"] then
    replayed = replayed + 1
  end
end

local function ms(us)
  return us / 1000.0
end

function done(summary, latency, requests)
  local non_2xx_total, replayed_total, by_status = 0, 0, {}
  for _, thread in ipairs(threads) do
    non_2xx_total = non_2xx_total + (thread:get("non_2xx") or 0)
    replayed_total = replayed_total + (thread:get("replayed") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local status_json = {}
  for status, count in pairs(by_status) do
    table.insert(status_json, string.format('"%d": %d', status, count))
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.6f, "rps": %.3f, "bytes": %d, '
      .. '"latency_ms": {"mean": %.3f, "stdev": %.3f, "max": %.3f, '
      .. '"p50": %.3f, "p90": %.3f, "p95": %.3f, "p99": %.3f}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, '
      .. '"status": %d, "non_2xx": %d}, "non_2xx_by_status": {%s}, "replayed": %d}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    ms(latency.mean), ms(latency.stdev), ms(latency.max),
    ms(latency:percentile(50)), ms(latency:percentile(90)),
    ms(latency:percentile(95)), ms(latency:percentile(99)),
    e.connect, e.read, e.write, e.timeout, e.status, non_2xx_total,
    table.concat(status_json, ", "), replayed_total
  ))
end
