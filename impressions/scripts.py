"""Lua scripts: each runs atomically on one slot, so one round trip does the whole step."""

# KEYS: seen, pending, armed, lost, pending days[, guard].  ARGV: now ('' = server time), window,
# guard ttl, lost impressions to report, day (yyyymmdd), post ids...  Returns {counted, newly
# armed, guard taken, blocked ms}; guard taken is -1 when no guard key was passed (a cluster: the
# guard lives in another slot); blocked ms: how long every post of the call stays de-duplicated.
RECORD = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local window = tonumber(ARGV[2])
if tonumber(ARGV[4]) > 0 then redis.call('INCRBY', KEYS[4], ARGV[4]) end
local suffix = ':' .. ARGV[5]
local counted = 0
local oldest = now  -- the oldest entry among the call's posts: the first to stop blocking
if window > 0 then
  -- Entries counted at or before now - window no longer block a new count.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local added = {}  -- a post twice on one page counts once
  -- One ZMSCORE and one ZADD per chunk, not a call per post: a page costs Redis a third less.
  -- Chunks keep unpack() under Lua's limit of 8000 values.
  for first = 6, #ARGV, 500 do
    local last = math.min(first + 499, #ARGV)
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, first, last))
    local entries = {}
    for i = first, last do
      local post = ARGV[i]
      local score = scores[i - first + 1]
      if score then
        oldest = math.min(oldest, tonumber(score))
      elseif not added[post] then
        added[post] = true
        entries[#entries + 1] = now
        entries[#entries + 1] = post
        redis.call('HINCRBY', KEYS[2], post .. suffix, 1)
        counted = counted + 1
      end
    end
    if #entries > 0 then redis.call('ZADD', KEYS[1], unpack(entries)) end
  end
else
  for i = 6, #ARGV do
    redis.call('HINCRBY', KEYS[2], ARGV[i] .. suffix, 1)
    counted = counted + 1
  end
end
local armed, guard = 0, -1
if counted > 0 then
  redis.call('SADD', KEYS[5], ARGV[5])
  -- The newest entry is the last to lapse, so the key may go when it does.
  if window > 0 then redis.call('EXPIRE', KEYS[1], math.ceil(window)) end
  if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
    armed = 1
    if KEYS[6] then
      guard = redis.call('SET', KEYS[6], '1', 'NX', 'EX', ARGV[3]) and 1 or 0
    end
  end
end
-- Milliseconds for which every post of the call stays blocked (a reload would count none).
local blocked_ms = 0
if window > 0 then blocked_ms = math.floor((oldest + window - now) * 1000) end
return {counted, armed, guard, blocked_ms}
"""

# KEYS: pending, snapshot, snapshots index, armed, pending days, snapshot days.  ARGV: flush id.
# Returns the counters snapshotted. Clearing `armed` here makes the next impression in this shard
# schedule the next flush.
SNAPSHOT = """
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[6]) end
redis.call('SADD', KEYS[3], ARGV[1])
return redis.call('HLEN', KEYS[2])
"""

# KEYS: schedule guard, window key.  ARGV: window key ttl.  The first part of a scheduled window to
# start takes the window key and deletes the guard; the window's other parts find the key taken
# and leave the guard (by then maybe the next window's) alone.  Returns 1 when it deleted.
OPEN_WINDOW = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: snapshot, snapshots index, snapshot days.  ARGV: flush id.  Called only after the
# database commit.
DROP_SNAPSHOT = """
redis.call('UNLINK', KEYS[1], KEYS[3])
return redis.call('SREM', KEYS[2], ARGV[1])
"""

# KEYS: pending, snapshots index, lost, pending days.  ARGV: snapshot key prefix, snapshot days
# prefix, post ids...  Returns per post the count still in Redis (pending + unapplied snapshots,
# summed over the days of each), then lost. A field without a day (written by a version before
# the history) is read too.
PENDING = """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local totals = {}
for i = 1, #ids do totals[i] = 0 end
local function read(hash, fields, owners)
  local values = redis.call('HMGET', hash, unpack(fields))
  for j = 1, #fields do
    if values[j] then totals[owners[j]] = totals[owners[j]] + tonumber(values[j]) end
  end
end
local function add(hash, days_key)
  local suffixes = {''}
  for _, day in ipairs(redis.call('SMEMBERS', days_key)) do suffixes[#suffixes + 1] = ':' .. day end
  local fields, owners = {}, {}
  for _, suffix in ipairs(suffixes) do
    for i = 1, #ids do
      fields[#fields + 1] = ids[i] .. suffix
      owners[#owners + 1] = i
      -- unpack() has a stack limit: ask in chunks.
      if #fields == 1000 then read(hash, fields, owners); fields, owners = {}, {} end
    end
  end
  if #fields > 0 then read(hash, fields, owners) end
end
add(KEYS[1], KEYS[4])
for _, flush_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  add(ARGV[1] .. flush_id, ARGV[2] .. flush_id)
end
local out = {}
for i = 1, #ids do out[i] = tostring(totals[i]) end
out[#ids + 1] = redis.call('GET', KEYS[3]) or '0'
return out
"""

# KEYS: pending, lost, snapshots index.  ARGV: snapshot key prefix.  Returns {pending counters,
# impressions in them, impressions reported lost, impressions in unapplied snapshots}: one short
# reply per shard instead of every field of the hashes.
BUFFER_TOTALS = """
local function sum(key)
  local total = 0
  for _, value in ipairs(redis.call('HVALS', key)) do total = total + tonumber(value) end
  return total
end
local snapshots = 0
for _, flush_id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  snapshots = snapshots + sum(ARGV[1] .. flush_id)
end
return {redis.call('HLEN', KEYS[1]), sum(KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), snapshots}
"""


def script(client, name):
    """The registered Script `name` for this client (EVALSHA, loading the script on NOSCRIPT)."""
    registered = client.__dict__.setdefault("_impressions_scripts", {})
    if name not in registered:
        registered[name] = client.register_script(globals()[name])
    return registered[name]
