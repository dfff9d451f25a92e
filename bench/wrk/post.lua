-- wrk script for the bench scripts, driven by the environment:
--   BENCH_BODY=FILE      POST the bytes of FILE (unset: wrk's plain GET)
--   BENCH_CTYPE=TYPE     Content-Type of the POST
--   BENCH_NONCE_LEN=N    replace the last N bytes of the body with a value
--                        unique to each request (an OCSP request made by
--                        `openssl ocsp -reqout` ends with its nonce's octets,
--                        RFC 9654), so no two requests carry the same nonce
--   BENCH_NONCE_POOL=N   distinct requests made per thread at start (65536),
--                        sent in turn
--   BENCH_NOPROBE=1      skip wrk's probe connection: its resolve() connects
--                        once and closes without a request, which can leave an
--                        `openssl ocsp -multi` worker busy on a dead socket
-- Written for Debian 12's wrk 4.1.0 (LuaJIT).

if os.getenv("BENCH_NOPROBE") == "1" then
  wrk.resolve = function(host, service)
    wrk.addrs = wrk.lookup(host, service)
  end
end

local body_file = os.getenv("BENCH_BODY")
if body_file then
  local f = assert(io.open(body_file, "rb"))
  local body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/octet-stream"

  local nlen = tonumber(os.getenv("BENCH_NONCE_LEN") or "0")
  if nlen > 0 then
    local head = body:sub(1, #body - nlen)
    local threads = 0
    function setup(thread)
      threads = threads + 1
      thread:set("tid", threads)
    end
    -- The requests are made once per thread (init), not per request: a
    -- request() that formats each request costs the client as much CPU as
    -- a cached server answer, and client and server share the 2 cores.
    -- BENCH_NONCE_POOL (65536) distinct requests per thread, taken in turn:
    -- no nonce repeats within a thread until it has sent that many.
    local pool = tonumber(os.getenv("BENCH_NONCE_POOL") or "65536")
    local reqs = {}
    local n = 0
    function init(args)
      for i = 1, pool do
        -- thread id and counter: 16 hex digits, padded to nlen bytes
        local nonce = string.format("%04x%012x", tid or 0, i)
        if #nonce < nlen then
          nonce = nonce .. string.rep("n", nlen - #nonce)
        else
          nonce = nonce:sub(1, nlen)
        end
        reqs[i] = wrk.format(nil, nil, nil, head .. nonce)
      end
    end
    function request()
      n = n + 1
      if n > pool then n = 1 end
      return reqs[n]
    end
  end
end
