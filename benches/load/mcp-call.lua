-- An agent's tools/call through /mcp (benches/load/run.sh's agents rows,
-- callgrind.sh MCP=1): each line of $SESSIONS is "token session credential"
-- (benches/load/mcp-sessions.sh), one MCP session per member; each request
-- is a tools/call naming that member's own account.
local reqs = {}
init = function(args)
  for line in io.lines(os.getenv("SESSIONS")) do
    local token, session, cred = line:match("(%S+) (%S+) (%S+)")
    local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"SALESFORCE_SEARCH_RECORDS","arguments":{"credential":"' .. cred .. '","query":"x"}}}'
    reqs[#reqs + 1] = wrk.format("POST", "/mcp", {["Authorization"] = "Bearer " .. token, ["Mcp-Session-Id"] = session,
      ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream"}, body)
  end
  i = 0
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
