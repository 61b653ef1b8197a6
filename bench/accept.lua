-- wrk script of `make bench-accept` (bench/accept.py writes its input and reads its output).
--
-- Arguments (after `--`): FILE PATH
--   FILE: one request a line, "<sender number>\t<body>", sent in order from the first line
--         (one wrk thread, so the order is the file's); past the last line it starts over.
--   PATH: the URL path to POST to.
-- Environment: BENCH_TOKENS, the bearer tokens of sender 1, 2, ... separated by spaces
-- (not on the command line, where any local user could read them); BENCH_DELAY_MS, when
-- above 0, waits that long before each request on a connection (a paced run below the
-- peak rate); BENCH_ANSWERED, a file to which the id of every message answered 201 is
-- written, one a line (the hub's answer is {"id":...,"accepted":...}).
-- Every answer's status is counted; the last line printed is
--   RESULT sent=N duration_us=N p50_us=N p99_us=N timeouts=N connect=N read=N write=N
--          status:201=N status:...=N first=<the first answer that was not 201, shortened>

local bodies, senders, headers = {}, {}, {}
local path = "/"
local sent = 0
local statuses = {}
local first = ""
local threads = {}
local answered = nil

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if pause > 0 then
  function delay()
    return pause
  end
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  path = args[2]
  local out = os.getenv("BENCH_ANSWERED") or ""
  if out ~= "" then
    answered = assert(io.open(out, "w"))
    answered:setvbuf("line")
  end
  for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "%S+") do
    headers[#headers + 1] = {
      ["Authorization"] = "Bearer " .. token,
      ["Schakel-User"] = "bench",
      ["Content-Type"] = "application/json",
    }
  end
  for line in io.lines(file) do
    local tab = string.find(line, "\t", 1, true)
    senders[#senders + 1] = tonumber(string.sub(line, 1, tab - 1))
    bodies[#bodies + 1] = string.sub(line, tab + 1)
  end
end

function request()
  local i = (sent % #bodies) + 1
  sent = sent + 1
  wrk.thread:set("sent", sent)
  return wrk.format("POST", path, headers[senders[i]], bodies[i])
end

function response(status, _, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 and answered then
    answered:write((string.match(body or "", '"id":"([^"]+)"') or "?"), "\n")
  end
  if status ~= 201 and first == "" then
    first = status .. " " .. string.gsub(string.sub(body or "", 1, 160), "[^%w%-%.:/ ]", "_")
  end
  wrk.thread:set("statuses", statuses)
  wrk.thread:set("first", first)
end

function done(summary, latency, _)
  local total_sent, counts, firsts = 0, {}, ""
  for _, thread in ipairs(threads) do
    total_sent = total_sent + (thread:get("sent") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + count
    end
    if firsts == "" then
      firsts = thread:get("first") or ""
    end
  end
  local e = summary.errors
  local line = string.format(
    "RESULT sent=%d duration_us=%d p50_us=%d p99_us=%d timeouts=%d connect=%d read=%d write=%d",
    total_sent, summary.duration, latency:percentile(50), latency:percentile(99),
    e.timeout, e.connect, e.read, e.write
  )
  for status, count in pairs(counts) do
    line = line .. string.format(" status:%d=%d", status, count)
  end
  io.write(line .. " first=" .. firsts .. "\n")
end
