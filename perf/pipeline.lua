-- wrk script for perf/run's pipelined mode: every connection writes `depth` GET / requests in
-- one go, and the next batch only after all `depth` answers arrived (HTTP/1.1 pipelining).
--
--   wrk -t1 -c50 -d10s --latency -s perf/pipeline.lua http://127.0.0.1:PORT/ -- depth=16 connections=50
--
-- wrk counts every answer as a request but records one latency sample per batch: the time from
-- writing the batch to reading its last answer. report.lua (loaded here) prints the numbers;
-- it explains why wrk's own percentiles are wrong with pipelining and how upct fixes that.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local batch

function init(args)
  perf_parse_args(args)
  local depth = tonumber(perf_args.depth or "16")
  if not depth or depth < 1 or depth ~= math.floor(depth) then
    error("pipeline.lua: depth must be a positive integer, got " .. tostring(perf_args.depth))
  end
  batch = string.rep(wrk.format("GET", "/"), depth)
end

function request()
  return batch
end
