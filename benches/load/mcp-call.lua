-- An agent's tools/call through /mcp (benches/load/run.sh's agents rows,
-- callgrind.sh MCP=1): each line of $SESSIONS is "token session credential"
-- (benches/load/mcp-sessions.sh), one MCP session per member; each request
-- is a tools/call naming that member's own account.
-- MCP_STATELESS=1: MCP 2026-07-28 instead, no session: each request carries
-- its protocol version and client facts in _meta and the MCP-* headers.
local stateless = os.getenv("MCP_STATELESS") == "1"
local TOOL = "SALESFORCE_SEARCH_RECORDS"
local META = ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"0"}}'
local reqs = {}
init = function(args)
  for line in io.lines(os.getenv("SESSIONS")) do
    local token, session, cred = line:match("(%S+) (%S+) (%S+)")
    local headers = {["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream"}
    local meta = ""
    if stateless then
      headers["MCP-Protocol-Version"] = "2026-07-28"
      headers["Mcp-Method"] = "tools/call"
      headers["Mcp-Name"] = TOOL
      meta = META
    else
      headers["Mcp-Session-Id"] = session
    end
    local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. TOOL ..
      '","arguments":{"credential":"' .. cred .. '","query":"x"}' .. meta .. '}}'
    reqs[#reqs + 1] = wrk.format("POST", "/mcp", headers, body)
  end
  i = 0
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
