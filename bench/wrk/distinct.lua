-- wrk script: POST one request body (from $COE_WRK_BODY) over and over and collect the
-- distinct response bodies; the summary says how many there were across all threads.
local f = assert(io.open(os.getenv("COE_WRK_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread) table.insert(threads, thread) end

seen = {}      -- per thread: body -> count
bodies = ""    -- per thread: the distinct bodies, separated by "\n\30\n"
non200 = 0
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1; return end
  if not seen[body] then
    seen[body] = true
    bodies = bodies .. body .. "\n\30\n"
  end
end

function done(summary, latency, requests)
  local all, n, bad = {}, 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    for body in string.gmatch(t:get("bodies"), "(.-)\n\30\n") do
      if not all[body] then all[body] = true; n = n + 1 end
    end
  end
  io.write(string.format("COE_DISTINCT requests=%d non200=%d distinct_answers=%d\n", summary.requests, bad, n))
  for body, _ in pairs(all) do io.write("COE_ANSWER " .. body .. "\n") end
end
