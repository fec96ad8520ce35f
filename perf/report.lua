-- wrk script for perf/run's keep-alive mode; pipeline.lua builds on it. It sends wrk's plain
-- GET / and, when the run ends, prints the numbers as lines perf/bench.py parses:
--   PERF <key> <value>           totals; times in microseconds
--   PERF pct <percentile> <us>   latency as wrk reports it (with its coordinated-omission fix)
--   PERF upct <percentile> <us>  the measured samples only, that fix undone
--
--   wrk -t1 -c50 -d10s --latency -s perf/report.lua http://127.0.0.1:PORT/ -- connections=50
--
-- Why two distributions: after the run wrk adds synthetic samples to its latency histogram
-- ("coordinated omission" correction): for every sample n >= 2e it adds samples at n-e, n-2e,
-- ... down to e, with e = duration / (answers / connections). Its --latency lines are computed
-- from that histogram. With pipelining every connection gets `depth` answers per batch but one
-- sample, so e is depth times too small; many synthetic samples then fall below the smallest
-- real one, where wrk's percentile() never looks, and its high percentiles print as 0. This
-- script reads the whole histogram (through LuaJIT's FFI; wrk 4.x's stats layout) and prints
-- both the corrected distribution, computed over every bucket, and the measured one, recovered
-- exactly: orig[m] = hist[m] - hist[m+e] for m > e, orig[m] = hist[m] otherwise. That needs
-- -c's value, passed as the script argument connections=N. Without it, or if the histogram
-- cannot be read, only wrk's own percentile() values are printed (as pct).

local points = {
  1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5,
  99, 99.5, 99.9, 99.95, 99.99, 99.999, 100,
}

-- key=value script arguments (after wrk's `--`), stored as globals of the thread's Lua state;
-- done() runs in wrk's main state and reads them back through the thread object.
function perf_parse_args(args)
  perf_args = {}
  for i = 0, #args do
    local k, v = tostring(args[i] or ""):match("^(%w+)=(.*)$")
    if k then
      perf_args[k] = v
    end
  end
  perf_connections = tonumber(perf_args.connections)
end

function init(args)
  perf_parse_args(args)
end

local perf_threads = {}
function setup(thread)
  perf_threads[#perf_threads + 1] = thread
end

local function line(key, value)
  io.write(string.format("PERF %s %s\n", key, tostring(value)))
end

-- The histogram as a Lua array of counts hist[0..max], or nil and why not.
local function read_histogram(latency)
  local ok, ffi = pcall(require, "ffi")
  if not ok then
    return nil, "no LuaJIT FFI"
  end
  local ok2, hist_or_err = pcall(function()
    local s = ffi.cast("uint64_t**", latency)[0]
    local count, limit = tonumber(s[0]), tonumber(s[1])
    local min, max = tonumber(s[2]), tonumber(s[3])
    if min ~= latency.min or max ~= latency.max or max >= limit then
      return "layout mismatch"
    end
    local hist, total = {}, 0
    for i = 0, max do
      local c = tonumber(s[4 + i])
      hist[i] = c
      total = total + c
    end
    if total ~= count then
      return "histogram sum " .. total .. " != count " .. count
    end
    return hist
  end)
  if not ok2 then
    return nil, tostring(hist_or_err)
  end
  if type(hist_or_err) ~= "table" then
    return nil, hist_or_err
  end
  return hist_or_err
end

-- Percentiles like wrk's stats_percentile (rank = round(p% of count + 0.5), first bucket whose
-- running total reaches it), but over buckets 0..max and with the rank capped at count (wrk
-- answers 0 for the 100th percentile).
local function percentiles(hist, max)
  local count, sum, sumsq = 0, 0, 0
  for i = 0, max do
    local c = hist[i]
    count = count + c
    sum = sum + c * i
  end
  local mean = count > 0 and sum / count or 0
  for i = 0, max do
    if hist[i] > 0 then
      sumsq = sumsq + hist[i] * (i - mean) ^ 2
    end
  end
  local out, total, k = {}, 0, 1
  for i = 0, max do
    total = total + hist[i]
    while k <= #points and total >= math.min(count, math.floor(points[k] / 100 * count + 1)) do
      out[k] = i
      k = k + 1
    end
    if k > #points then
      break
    end
  end
  local min = 0
  while min < max and hist[min] == 0 do
    min = min + 1
  end
  return out, count, mean, count > 1 and math.sqrt(sumsq / (count - 1)) or 0, min
end

local function print_pcts(tag, values)
  for k, p in ipairs(points) do
    io.write(string.format("PERF %s %g %d\n", tag, p, values[k] or 0))
  end
end

function done(summary, latency, requests)
  line("requests", summary.requests)
  line("duration_us", summary.duration)
  line("bytes", summary.bytes)
  line("errors_connect", summary.errors.connect)
  line("errors_read", summary.errors.read)
  line("errors_write", summary.errors.write)
  line("errors_timeout", summary.errors.timeout)
  -- wrk counts every answer with a status above 399 here ("Non-2xx or 3xx responses").
  line("errors_status", summary.errors.status)
  line("latency_min_us", latency.min)
  line("latency_max_us", latency.max)

  local connections = perf_threads[1] and perf_threads[1]:get("perf_connections")
  local hist, why = read_histogram(latency)
  if not hist then
    line("note", "wrk histogram unreadable (" .. why .. "); pct from wrk's percentile()")
    line("latency_mean_us", string.format("%.1f", latency.mean))
    line("latency_stdev_us", string.format("%.1f", latency.stdev))
    for _, p in ipairs(points) do
      io.write(string.format("PERF pct %g %d\n", p, latency:percentile(p)))
    end
    io.flush()
    return
  end

  local max = latency.max
  local pct, count, mean, stdev = percentiles(hist, max)
  line("samples_corrected", count)
  line("latency_mean_us", string.format("%.1f", mean))
  line("latency_stdev_us", string.format("%.1f", stdev))
  print_pcts("pct", pct)

  local per_conn = connections and math.floor(summary.requests / connections) or 0
  if per_conn <= 0 then
    line("note", "no connections=N script argument; measured distribution not recovered")
    io.flush()
    return
  end
  local e = math.floor(summary.duration / per_conn)
  line("correction_interval_us", e)
  local orig = {}
  for m = 0, max do
    if m > e then
      orig[m] = hist[m] - (m + e <= max and hist[m + e] or 0)
    else
      orig[m] = hist[m]
    end
  end
  local upct, ucount, umean, ustdev, umin = percentiles(orig, max)
  line("samples", ucount)
  line("ulatency_min_us", umin)
  line("ulatency_mean_us", string.format("%.1f", umean))
  line("ulatency_stdev_us", string.format("%.1f", ustdev))
  print_pcts("upct", upct)
  io.flush()
end
