-- Each request names its own credential with its own member's token: the
-- lines of $TOKENS are "token credential"; $BENCH_PATH is the Proxy API
-- path. Each connection starts at a random line. Used by run.sh,
-- callgrind.sh and remint.sh.
local reqs = {}
init = function(args)
  local path = os.getenv("BENCH_PATH")
  for line in io.lines(os.getenv("TOKENS")) do
    local token, cred = line:match("(%S+) (%S+)")
    reqs[#reqs + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token, ["X-Paragon-Credential"] = cred})
  end
  math.randomseed(os.time())
  i = math.random(#reqs)
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
