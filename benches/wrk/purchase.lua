-- wrk script for flashgate's purchase endpoint: every request is a different buyer with a
-- fresh Idempotency-Key, POSTed to the path of the URL wrk is given.
--
-- Usage: wrk -t T -c C -d D -s benches/wrk/purchase.lua URL -- TOKEN_FILE T
--   TOKEN_FILE  one buyer JWT per line (examples/mint_tokens.rs), all distinct users; a line
--               may carry a purchase token after a space, sent as the body's purchase_token
--   T           the same thread count as -t: thread k (1-based) uses lines k, k+T, k+2T, ...
--               so no two threads ever send the same buyer.
-- Keys are "<thread>-<counter>". If a thread runs out of tokens it starts over and counts
-- the reuse as "tokens_reused" (those buyers then hit their per-user limit: the run is too
-- long for the file).
--
-- wrk runs each thread in its own Lua state: setup() (main state) keeps every thread's
-- handle, response() counts statuses in the thread's state, done() (main state) reads the
-- counts back with thread:get() and prints one "status <code> <count>" line per code, then
-- "requests_sent", "responses" and "tokens_reused" totals. (wrk calls request() once before
-- the run to check the script, so requests_sent is one more than wrk actually sent.)

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   table.insert(threads, thread)
   next_id = next_id + 1
end

function init(args)
   local file, stride = args[1], tonumber(args[2] or "1")
   if file == nil then
      error("usage: wrk ... -s purchase.lua URL -- TOKEN_FILE THREADS")
   end
   tokens = {}
   local n = 0
   for line in io.lines(file) do
      if n % stride == id - 1 and #line > 0 then
         tokens[#tokens + 1] = line
      end
      n = n + 1
   end
   if #tokens == 0 then
      error("no tokens for thread " .. id .. " in " .. file)
   end
   statuses = {}
   counter = 0
   tokens_reused = 0
end

-- The headers' bearer and the body of token file line `line`.
local function buyer(line)
   local jwt, purchase_token = line:match("^(%S+) (%S+)$")
   if jwt == nil then
      return line, '{"quantity":1}'
   end
   return jwt, '{"quantity":1,"purchase_token":"' .. purchase_token .. '"}'
end

function request()
   counter = counter + 1
   local i = counter
   if i > #tokens then
      tokens_reused = tokens_reused + 1
      i = (i - 1) % #tokens + 1
   end
   local jwt, body = buyer(tokens[i])
   return wrk.format("POST", wrk.path, {
      ["Authorization"] = "Bearer " .. jwt,
      ["Idempotency-Key"] = id .. "-" .. counter,
      ["Content-Type"] = "application/json",
   }, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total, reused, sent, responses = {}, 0, 0, 0
   for _, thread in ipairs(threads) do
      for code, count in pairs(thread:get("statuses")) do
         total[code] = (total[code] or 0) + count
         responses = responses + count
      end
      reused = reused + thread:get("tokens_reused")
      sent = sent + thread:get("counter")
   end
   local codes = {}
   for code in pairs(total) do
      codes[#codes + 1] = code
   end
   table.sort(codes)
   for _, code in ipairs(codes) do
      io.write(string.format("status %d %d\n", code, total[code]))
   end
   io.write(string.format("requests_sent %d\nresponses %d\ntokens_reused %d\n",
                          sent, responses, reused))
end
