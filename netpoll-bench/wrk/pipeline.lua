-- wrk script: HTTP/1.1 pipelining. Each request() call hands wrk DEPTH requests at once
-- (written in one go); wrk counts every response. Used by `netpoll-bench http`.
--
--   wrk -t1 -c100 -d10s --latency -s pipeline.lua http://127.0.0.1:8080/plaintext -- 16
--
-- Arguments after `--`: the depth (default 16) and the path (default: the URL's path).

local depth = 16
local batch

init = function(args)
   depth = tonumber(args[1]) or depth
   local path = args[2] or wrk.path
   local requests = {}
   for i = 1, depth do
      requests[i] = wrk.format(nil, path)
   end
   batch = table.concat(requests)
end

request = function()
   return batch
end
