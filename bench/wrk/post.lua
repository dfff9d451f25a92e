-- wrk script for the bench scripts, driven by the environment:
--   BENCH_BODY=FILE      POST the bytes of FILE (unset: wrk's plain GET)
--   BENCH_CTYPE=TYPE     Content-Type of the POST
--   BENCH_NONCE_LEN=N    replace the last N bytes of the body with a value
--                        unique to each request (an OCSP request made by
--                        `openssl ocsp -reqout` ends with its nonce's octets,
--                        RFC 9654), so no two requests carry the same nonce
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
    local n = 0
    function request()
      n = n + 1
      -- thread id and counter: 16 hex digits, padded to nlen bytes
      local nonce = string.format("%04x%012x", tid or 0, n)
      if #nonce < nlen then
        nonce = nonce .. string.rep("n", nlen - #nonce)
      else
        nonce = nonce:sub(1, nlen)
      end
      return wrk.format(nil, nil, nil, head .. nonce)
    end
  end
end
