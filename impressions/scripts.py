"""Lua scripts: each runs atomically on one slot, so one round trip does the whole step."""

from . import keys
from .redis_client import run_script

# keys.GROUPS, in Lua: the suffixes of a hash's group keys.
GROUPS = """
local GROUPS = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'x'}
"""

# group_of(post id): the index (from 1) in keys.GROUPS of the group whose hash the record script
# counts the post in: its block of keys.BLOCK ids, modulo 10; the last for anything else. The
# recorder's ids are whole numbers (an id past 1e308 has no group: the record script refuses it).
GROUP_OF = f"""
local function group_of(post)
  local id = tonumber(post)
  if not id then return {len(keys.GROUPS)} end
  return 1 + math.floor(id / {keys.BLOCK}) % 10
end
"""

# How long keys.scheduled_window_key() lasts: a flush lost and followed by no view for longer is
# not reported (tasks.lost_window).
SCHEDULED_WINDOW_TTL = 7 * 24 * 3600

# KEYS: seen, pending (ungrouped: read, no longer written), armed, lost, pending days, totals,
# snapshots index, the viewer's counted impressions this hour, the 11 pending group hashes
# (keys.GROUPS: by the post id's block of 1000, anything else last)[, guard, scheduled window].
# ARGV: now ('' = server time), window, guard ttl, lost impressions to report, day (yyyymmdd, or
# "<day before> <day> <day after> <the first second of each> <the day after's end>", Unix seconds,
# negative before 1970 (a host clock reset to the epoch names those days): the one `now` falls in,
# so that the server's clock, not the caller's, says which day a view counts on), the viewer's
# hourly budget (0: none), that key's ttl, post ids...  Returns {counted, newly armed,
# guard taken, blocked ms, limited, lapsed window, its pttl, now}, or {'day', now}, having written
# nothing, when `now` falls in none of the three days (the caller's clock a day or more off: it
# asks again with the days around `now`); guard taken is the guard's value when
# this call took it, 0 when not, -1 when no guard key was passed (a cluster: the guard lives in
# another slot); lapsed window and its pttl: when this call took the guard, what the scheduled
# window's key held before (TAKE_SCHEDULE); blocked ms: how long every post of the call stays
# de-duplicated; limited: posts that would have counted but for the budget (not counted, not
# de-duplicated). The shard's totals get what the pending hash got, so reading them is O(1).
RECORD = (
    GROUP_OF
    + f"local SCHEDULED_WINDOW_TTL = {SCHEDULED_WINDOW_TTL}\n"
    + """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local day = ARGV[5]
local before, own, after, s0, s1, s2, s3 =
  string.match(day, '^(%d+) (%d+) (%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+)$')
if own then
  if now < tonumber(s0) or now >= tonumber(s3) then return {'day', tostring(now)} end
  day = own
  if now < tonumber(s1) then day = before elseif now >= tonumber(s2) then day = after end
end
local window = tonumber(ARGV[2])
if tonumber(ARGV[4]) > 0 then redis.call('INCRBY', KEYS[4], ARGV[4]) end
local suffix = ':' .. day
local budget = tonumber(ARGV[6])
local room  -- what the viewer may still count this hour; read at its first new post
local looked = {}  -- the hashes this call found no longer new
local function group_key(post) return KEYS[8 + group_of(post)] end  -- its pending hash
local counted, fresh, limited = 0, 0, 0  -- fresh: pending fields this call created
local function count(post)
  if budget > 0 then
    room = room or budget - tonumber(redis.call('GET', KEYS[8]) or '0')
    if room <= 0 then
      limited = limited + 1
      return false
    end
    room = room - 1
  end
  local key = group_key(post)
  if redis.call('HINCRBY', key, post .. suffix, 1) == 1 then
    fresh = fresh + 1
    if not looked[key] and redis.call('HLEN', key) == 1 then
      -- A new hash: a field longer than hash-max-listpack-value, set and deleted at once, makes
      -- it a hash table for good. A small-hash encoding (listpack) finds a field by scanning
      -- them all: with 11 hashes a shard filling up, most counts would be written that way.
      local long = string.rep('~', 4097)
      redis.call('HSET', key, long, 0)
      redis.call('HDEL', key, long)
    end
    looked[key] = true
  end
  counted = counted + 1
  return true
end
local oldest = now  -- the oldest entry among the call's posts: the first to stop blocking
if window > 0 then
  -- Entries counted at or before now - window no longer block a new count; they are pruned
  -- after the counts: a full Redis (maxmemory) refuses a script at its first write only if that
  -- one may add memory (HINCRBY, INCRBY) and lets every later one through, so a pruning first
  -- would let the call count on past the limit.
  local expired = now - window
  local added = {}  -- a post twice on one page counts once
  -- One ZMSCORE and one ZADD per chunk, not a call per post: a page costs Redis a third less.
  -- Chunks keep unpack() under Lua's limit of 8000 values.
  for first = 8, #ARGV, 500 do
    local last = math.min(first + 499, #ARGV)
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, first, last))
    local entries = {}
    for i = first, last do
      local post = ARGV[i]
      local score = scores[i - first + 1]
      if score and tonumber(score) > expired then
        oldest = math.min(oldest, tonumber(score))
      elseif not added[post] then
        added[post] = true
        if count(post) then
          entries[#entries + 1] = now
          entries[#entries + 1] = post
        end
      end
    end
    if #entries > 0 then redis.call('ZADD', KEYS[1], unpack(entries)) end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', expired)
else
  for i = 8, #ARGV do count(ARGV[i]) end
end
local function entries()  -- the pending fields, of every hash
  local n = redis.call('HLEN', KEYS[2])
  for i = 9, 19 do n = n + redis.call('HLEN', KEYS[i]) end
  return n
end
local armed, guard, lapsed, lapsed_ttl = 0, -1, false, -2
if counted > 0 then
  if redis.call('HINCRBY', KEYS[6], 'pending', counted) == counted
      and redis.call('HEXISTS', KEYS[6], 'exact') == 0
      and entries() == fresh and redis.call('SCARD', KEYS[7]) == 0 then
    -- The shard held nothing before this call (a new Redis): its totals are exact from here on.
    redis.call('HSET', KEYS[6], 'exact', 1)
  end
  redis.call('SADD', KEYS[5], day)
  if budget > 0 and redis.call('INCRBY', KEYS[8], counted) == counted then
    redis.call('EXPIRE', KEYS[8], ARGV[7])
  end
  -- The newest entry is the last to lapse, so the key may go when it does.
  if window > 0 then redis.call('EXPIRE', KEYS[1], math.ceil(window)) end
  if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
    armed = 1
    if KEYS[20] then
      -- Its value: when the flush was scheduled (the dashboard adds the delay).
      guard = redis.call('SET', KEYS[20], tostring(now), 'NX', 'EX', ARGV[3]) and 1 or 0
      if guard == 1 then
        lapsed = redis.call('GET', KEYS[21]) or false
        lapsed_ttl = redis.call('PTTL', KEYS[21])
        redis.call('SET', KEYS[21], tostring(now), 'EX', SCHEDULED_WINDOW_TTL)
      end
      -- Another caller's window: the flag lapses with its guard (schedule.lapse_with_guard).
      local ttl = guard == 0 and redis.call('PTTL', KEYS[20]) or 0
      if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
    end
  end
end
-- Milliseconds for which every post of the call stays blocked (a reload would count none); none
-- when the budget held some back: they are not blocked, and a reload must report them again.
local blocked_ms = 0
if window > 0 and limited == 0 then blocked_ms = math.floor((oldest + window - now) * 1000) end
-- The guard taken: its value, which the window's tasks carry (flush.window_command).
return {
  counted, armed, guard == 1 and tostring(now) or guard, blocked_ms, limited, lapsed, lapsed_ttl,
  tostring(now)
}
"""
)

# sum(key): the sum of a hash's values, every field read: O(fields), so never on a scrape's path.
SUM_HASH = """
local function sum(key)
  local total = 0
  for _, value in ipairs(redis.call('HVALS', key)) do total = total + tonumber(value) end
  return total
end
"""

# is_own(flush id): whether a snapshot id is of this build's layout (keys.FLUSH_ID, the rule in
# keys.py): the scripts leave the others (a later build's) alone.
FLUSH_ID = f"""
local function is_own(flush_id) return string.find(flush_id, '{keys.LUA_FLUSH_ID}') ~= nil end
"""

# The flush's scripts and the schedule guard's must run on a full Redis (maxmemory reached):
# they free its memory, or write a few bytes so that a flush does. A script without flags is
# refused there only at its first write, and only if that one may add memory (SET, HSET, SADD):
# each starts with a write that cannot (DEL, UNLINK), after which Redis lets the others through.
# (A `#!lua flags=allow-oom` shebang would say so outright, but Redis 6 refuses the shebang.)
# Each may also run twice with the same arguments: redis-py's cluster pipeline sends a command
# again, alone, when its reply was lost or timed out, whatever retries the client has. A second
# SNAPSHOT returns early (see there); a second DROP_SNAPSHOT, SET_ASIDE or REPLICATED finds its
# work done and changes nothing; a second OPEN_WINDOW finds the window key and leaves the guard.

# KEYS: pending (ungrouped), snapshot (ungrouped), snapshots index, armed, pending days, snapshot
# days, totals, the 11 pending group hashes, the 11 snapshot group hashes.  ARGV: flush id,
# snapshot key prefix.  Returns the counters snapshotted. Each pending hash is renamed to its
# snapshot. Clearing `armed` here makes the next impression in this shard schedule the next flush.
# The pending total moves with the hashes: to the snapshot's own field in the totals
# (DROP_SNAPSHOT takes it off again) and into their sum over snapshots. Totals not kept yet (keys
# of the version before them, or a lost key) are counted here in full, once: the flush reads all
# of it anyway, the metrics never do; another layout's snapshot (keys.py) keeps the total its
# build gave it, read, never its hashes. Run again with the same flush id (a resent command), it
# changes nothing and returns the same count.
SNAPSHOT = (
    SUM_HASH
    + GROUPS
    + FLUSH_ID
    + """
local function sum_all(key, first)  -- an ungrouped hash and its group hashes
  local total = sum(key)
  for i = 1, #GROUPS do total = total + sum(first and KEYS[first + i - 1] or key .. ':' .. GROUPS[i]) end
  return total
end
-- Sent again (a cluster pipeline resends a command whose reply was lost or timed out, though
-- the server ran it): this flush's snapshot is taken. A second rename would put what was
-- recorded since in its place, those first counts lost, and redo the totals' bookkeeping; so it
-- answers as the first run did, read-only, before the first write. A first run that found
-- nothing added no member: a second one takes what came since, once.
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  local fields = redis.call('HLEN', KEYS[2])
  for i = 1, #GROUPS do fields = fields + redis.call('HLEN', KEYS[7 + #GROUPS + i]) end
  return fields
end
redis.call('DEL', KEYS[4])  -- the first write (see above)
if redis.call('HEXISTS', KEYS[7], 'exact') == 0 then
  local ids, kept = redis.call('SMEMBERS', KEYS[3]), {}
  for _, flush_id in ipairs(ids) do
    if not is_own(flush_id) then
      kept[flush_id] = redis.call('HGET', KEYS[7], 'snapshot:' .. flush_id)
    end
  end
  redis.call('DEL', KEYS[7])
  local snapshots = 0
  for _, flush_id in ipairs(ids) do
    local size
    if is_own(flush_id) then
      size = sum_all(ARGV[2] .. flush_id)
    else
      size = kept[flush_id]
    end
    if size then
      snapshots = snapshots + (tonumber(size) or 0)
      redis.call('HSET', KEYS[7], 'snapshot:' .. flush_id, size)
    end
  end
  redis.call('HSET', KEYS[7], 'pending', sum_all(KEYS[1], 8), 'snapshots', snapshots, 'exact', 1)
end
local fields = 0
for i = 0, #GROUPS do
  local from, to = KEYS[1], KEYS[2]
  if i > 0 then from, to = KEYS[7 + i], KEYS[7 + #GROUPS + i] end
  if redis.call('EXISTS', from) == 1 then
    redis.call('RENAME', from, to)
    fields = fields + redis.call('HLEN', to)
  end
end
if fields == 0 then
  -- Nothing pending: its total is 0, whatever a writer of an older version left out of it.
  redis.call('HSET', KEYS[7], 'pending', 0)
  return 0
end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[6]) end
redis.call('SADD', KEYS[3], ARGV[1])
local moved = tonumber(redis.call('HGET', KEYS[7], 'pending'))
redis.call('HSET', KEYS[7], 'pending', 0, 'snapshot:' .. ARGV[1], moved)
redis.call('HINCRBY', KEYS[7], 'snapshots', moved)
return fields
"""
)

# KEYS: a key of the node's (keys.replicated_key).  Set and deleted: nothing stays, but the write
# goes to the replicas after everything written before it on that node, so a WAIT right after it
# on the same connection (which waits for that connection's own last write) covers the snapshots
# too, whichever connection took them. DEL first: a full Redis lets the SET through (see above).
REPLICATED = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[1], '1')
redis.call('DEL', KEYS[1])
"""

# KEYS: schedule guard, window key, scheduled window.  ARGV: window key ttl, window.  The first part
# of a scheduled window to start takes the window key and deletes the guard, if the guard is its
# window's (a window "<token>[~<prefix mark>]@<guard's value>" names the guard it was enqueued
# under; one without "@" names none: a version before, deleting any); the window's other parts find
# the key taken and leave the guard alone, and so does a window's first part that starts after its
# guard lapsed (a job of a queue no worker served, run at last) when the guard is a later window's.
# The scheduled window's key goes if it names this window (TAKE_SCHEDULE).  The DEL of the window
# key, absent, comes first: a write that adds no memory, after which a full Redis takes the rest.
# Returns 0 when another part opened the window, 1 when this call deleted its guard (or a window
# without "@" any guard), 2 when its guard had lapsed and none was there, 3 when the guard was a
# later window's: 2 and 3 say the flush started more than its guard's time after it was scheduled.
OPEN_WINDOW = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
local owner = string.match(ARGV[2], '@(.+)$')
local guard = redis.call('GET', KEYS[1])
local mine = not owner or not guard or guard == owner
if mine then redis.call('DEL', KEYS[1]) end
if owner and redis.call('GET', KEYS[3]) == owner then redis.call('DEL', KEYS[3]) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
if not owner or guard == owner then return 1 end
return guard and 3 or 2
"""

# KEYS: schedule guard, scheduled window.  ARGV: its ttl.  Takes the guard as TAKE_GUARD does,
# its value the server's time (Unix seconds, to the millisecond, as the record script's: a flush
# tells a late window by it, on the same clock), and, when it did, sets the scheduled window's key
# to the same value (SCHEDULED_WINDOW_TTL); returns {1, what that key held before (nil: none), its
# PTTL before, the value}, or {0} when the guard was taken already. A value still there names a
# window whose flush never started before its guard lapsed (tasks.lost_window). The record script
# does the same.
TAKE_SCHEDULE = f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return {{0}} end
redis.call('DEL', KEYS[1])
local t = redis.call('TIME')
local value = string.format('%d.%03d', tonumber(t[1]), math.floor(tonumber(t[2]) / 1000))
redis.call('SET', KEYS[1], value, 'EX', ARGV[1])
local lapsed = redis.call('GET', KEYS[2])
local ttl = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], value, 'EX', {SCHEDULED_WINDOW_TTL})
return {{1, lapsed or false, ttl, value}}
"""

# KEYS: the flush mark (keys.flush_mark_key).  ARGV: a flush id.  Raises the mark to the id (ids of
# one layout sort as text, by time) and returns what it held before (false: nothing).
FLUSH_MARK = """
local old = redis.call('GET', KEYS[1])
if not old or ARGV[1] > old then redis.call('SET', KEYS[1], ARGV[1]) end
return old
"""

# KEYS: schedule guard.  ARGV: its value, its ttl.  SET NX EX, on a full Redis too (see above).
# Returns 1 when it took the guard.
TAKE_GUARD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: snapshot (ungrouped), snapshots index, snapshot days, totals, the 11 snapshot group
# hashes.  ARGV: flush id.  Called only after the database commit. The snapshot's total leaves the
# totals once: a second drop finds no field. `0 - size`, not `-size`: Lua's -0 reaches Redis as
# "-0", which HINCRBY refuses, and a snapshot weighs 0 when an older build's flush zeroed its
# shard's pending total while this build's group hashes held counts (a rolling deploy).
DROP_SNAPSHOT = """
redis.call('UNLINK', KEYS[1], KEYS[3], unpack(KEYS, 5))
local field = 'snapshot:' .. ARGV[1]
local size = redis.call('HGET', KEYS[4], field)
if size then
  redis.call('HDEL', KEYS[4], field)
  redis.call('HINCRBY', KEYS[4], 'snapshots', 0 - tonumber(size))
end
return redis.call('SREM', KEYS[2], ARGV[1])
"""

# KEYS: snapshot hash (ungrouped or a group's), set-aside hash.  ARGV: flush id, fields...  Moves each field still in the snapshot
# to the set-aside hash, as `<flush id> <field>` with its count: in one step, so a flush killed
# around it finds each field in one place. Returns the fields moved.
SET_ASIDE = """
local moved = 0
for i = 2, #ARGV do
  local count = redis.call('HGET', KEYS[1], ARGV[i])
  if count then
    redis.call('HDEL', KEYS[1], ARGV[i])  -- first: a full Redis lets the HSET through then
    redis.call('HSET', KEYS[2], ARGV[1] .. ' ' .. ARGV[i], count)
    moved = moved + 1
  end
end
return moved
"""

# KEYS: pending (ungrouped), snapshots index, lost, pending days, the 11 pending group hashes.
# ARGV: snapshot key prefix, snapshot days prefix, post ids...  Returns per post the count still
# in Redis (pending + unapplied snapshots, summed over the days of each), then lost. A field
# without a day (written by a version before the history) is read too; another layout's
# snapshots (keys.py) are not. A post's counts are in its group's hash (group_of, as the record
# script wrote them; a snapshot's group hashes are the pending ones renamed) or in the ungrouped
# one (a version before the groups): those two are read for it, not the other ten.
PENDING = (
    GROUPS
    + GROUP_OF
    + FLUSH_ID
    + """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local totals, every, members = {}, {}, {}  -- members[g]: the ids' indexes of group g
for g = 1, #GROUPS do members[g] = {} end
for i = 1, #ids do
  totals[i], every[i] = 0, i
  local own = members[group_of(ids[i])]
  if own then
    own[#own + 1] = i
  else  -- no group (see group_of; the record script wrote none): every hash, as before
    for g = 1, #GROUPS do members[g][#members[g] + 1] = i end
  end
end
local function read(hash, fields, owners)
  local values = redis.call('HMGET', hash, unpack(fields))
  for j = 1, #fields do
    if values[j] then totals[owners[j]] = totals[owners[j]] + tonumber(values[j]) end
  end
end
local function add(hash, suffixes, which)  -- the fields of ids[which] in one hash
  if #which == 0 or redis.call('EXISTS', hash) == 0 then return end
  local fields, owners = {}, {}
  for _, suffix in ipairs(suffixes) do
    for _, i in ipairs(which) do
      fields[#fields + 1] = ids[i] .. suffix
      owners[#owners + 1] = i
      -- unpack() has a stack limit: ask in chunks.
      if #fields == 1000 then
        read(hash, fields, owners)
        fields, owners = {}, {}
      end
    end
  end
  if #fields > 0 then read(hash, fields, owners) end
end
local function add_all(ungrouped, group_keys, days_key)
  local suffixes = {''}
  for _, day in ipairs(redis.call('SMEMBERS', days_key)) do suffixes[#suffixes + 1] = ':' .. day end
  add(ungrouped, suffixes, every)
  for g = 1, #GROUPS do add(group_keys[g], suffixes, members[g]) end
end
add_all(KEYS[1], {unpack(KEYS, 5)}, KEYS[4])
for _, flush_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if is_own(flush_id) then
    local snapshot = ARGV[1] .. flush_id
    local group_keys = {}
    for g, group in ipairs(GROUPS) do group_keys[g] = snapshot .. ':' .. group end
    add_all(snapshot, group_keys, ARGV[2] .. flush_id)
  end
end
local out = {}
for i = 1, #ids do out[i] = tostring(totals[i]) end
out[#ids + 1] = redis.call('GET', KEYS[3]) or '0'
return out
"""
)


# KEYS: the new viewers of one IP address this hour (hash).  ARGV: the viewer's digest, sets a
# cookie (1/0), budget, ttl.  Returns 1 when the request may count (and get its cookie), 0 when the
# address has used its budget. A new viewer costs 1: each visitor cookie issued; without cookies,
# each digest new this hour (a digest already granted costs nothing again).
NEW_VIEWER = """
local cookie = ARGV[2] == '1'
if not cookie and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local granted = tonumber(redis.call('HGET', KEYS[1], '#') or '0')
if granted >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], '#', 1)
if not cookie then redis.call('HSET', KEYS[1], ARGV[1], 1) end
if granted == 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


# KEYS: any key (a cluster routes the call by it).  Returns the server's TIME: {seconds, µs}.
TIME = "return redis.call('TIME')"


def script(client, name):
    """The registered Script `name` for this client (EVALSHA, loading the script on NOSCRIPT)."""
    registered = client.__dict__.setdefault("_impressions_scripts", {})
    if name not in registered:
        registered[name] = client.register_script(globals()[name])
    return registered[name]


def evalsha(client, name, script_keys, args):
    """Run script `name` by its SHA1 in one round trip (see redis_client.run_script)."""
    return run_script(client, script(client, name), script_keys, args)
