-- POST /ra/v1/subjects/{id}/certificates with "{}", cycling through the
-- subject ids in $SUBJECTS (one per line), bearer token $TOK.
local ids = {}
local n = 0
for line in io.lines(os.getenv("SUBJECTS")) do ids[#ids + 1] = line end
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("TOK"),
  ["Content-Type"] = "application/json",
}
request = function()
  n = n + 1
  return wrk.format("POST", "/ra/v1/subjects/" .. ids[(n % #ids) + 1] .. "/certificates", headers, "{}")
end
