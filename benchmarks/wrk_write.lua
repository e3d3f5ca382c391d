-- wrk hooks for write targets (benchmarks/loadgen.py WriteLoad): every request is a
-- `method` to prefix .. key .. suffix with `body` and a unique Idempotency-Key
-- (run id, thread number, counter), the key taking each of the given keys in turn.
-- Reporting is wrk_report.lua's. Script arguments (after "--"):
--   run_id method path_prefix path_suffix body key [key ...]

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")

local report_setup, report_init = setup, init
local threads_started = 0

function setup(thread)
  report_setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_no", threads_started)
end

function init(args)
  report_init(args)
  run_id, method, prefix, suffix, body = args[1], args[2], args[3], args[4], args[5]
  keys = {}
  for i = 6, #args do
    table.insert(keys, args[i])
  end
  counter = 0
  -- wrk.format takes the headers as given (without wrk's -H ones), so start from those.
  request_headers = {}
  for name, value in pairs(wrk.headers) do
    request_headers[name] = value
  end
end

function request()
  counter = counter + 1
  local key = keys[(counter + thread_no) % #keys + 1]
  request_headers["Idempotency-Key"] = run_id .. "-" .. thread_no .. "-" .. counter
  return wrk.format(method, prefix .. key .. suffix, request_headers, body)
end
