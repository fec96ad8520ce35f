-- wrk: GET /auth with the bearer tokens of $TOKENS (one per line), each request the next one.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/auth", {["Authorization"] = "Bearer " .. tokens[i]})
end
