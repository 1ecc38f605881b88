-- For prometheus-redis-exporter's --script flag (redis_exporter v1.x): the age in seconds
-- of the oldest waiting job of every BullMQ queue, as redis_script_values{key="<queue>"}.
-- BullMQ LPUSHes new job ids onto bull:<queue>:wait and workers take from the right, so
-- the oldest waiting job is the last element; its hash holds `timestamp` (ms, creation).
-- An empty queue reports 0: nothing is waiting. Prioritized and delayed jobs are not
-- counted. Uses SCAN, never KEYS, so a large keyspace is not blocked.
local out = {}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', 'bull:*:wait', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local queue = string.sub(key, 6, -6)
    local age = 0
    local id = redis.call('LINDEX', key, -1)
    if id then
      local created = redis.call('HGET', 'bull:' .. queue .. ':' .. id, 'timestamp')
      if created then
        age = math.max(0, (now_ms - tonumber(created)) / 1000)
      end
    end
    table.insert(out, queue)
    table.insert(out, tostring(age))
  end
until cursor == '0'
return out
