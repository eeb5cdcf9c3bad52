"""The waiting room's Lua scripts, one per decision; each runs atomically inside Redis on
Redis's clock (``TIME``), so every app process decides alike.

Keys of drop N (hash-tagged ``{room:N}`` so they share a cluster slot):
``rules`` (hash: starts, ends, pre, rate, ttl in ms/units, share = the per-buyer limit),
``queue`` (zset user → place: pre-queue joiners draw a place in [0, 1) at join, later
arrivals get 1 + arrival number, so every pre-queue place comes first and they are ordered
at the start by the draw), ``seq`` (arrival counter), ``admitted`` (zset user → admission
expiry ms, still holding units), ``used`` (zset user → expiry ms, admissions whose hold ended:
they keep answering ``admitted`` until expiry), ``bucket`` (hash tokens, ts: the admission
token bucket, holding at most one second of admissions), ``left`` (units the stock port has
left of the drop's options), ``total`` (admissions ever made), ``holds`` (hash user → units
its admission holds), ``held`` (the sum of ``holds``), ``taken`` (units reserved through the
room, ever: the refresh's correction), ``churn`` (bumped by each refresh that starts) and
``writes`` (bumped by each refresh that writes).

The slot rule (``shop.domain.drops.queue``): an admission holds ``share`` units, or what is
free if less; nobody is admitted unless one unit is free of holds (``left − held ≥ 1``).
A hold ends when the buyer's order reserves (``TAKE``: ``left`` drops by what it took and the
hold is freed in the same script, so for that instant nothing is counted twice or not at
all), when the stock port refuses the buyer (``RELEASE_HOLD``), or when it expires (``DECIDE``).

DECIDE (shared by join and poll) first ends expired admissions (their holds come back), then
admits ``min(tokens, waiting, buyers the free units cover)`` from the head of the queue.
Answers: ``{'lost'}`` (no rules: Redis lost the room), ``{'ended'}``, ``{'not_open', starts}``,
``{'admitted', expiry}``, ``{'waiting', position (0 before the start), starts, rate}``,
``{'sold_out', position, starts, rate}``, ``{'unknown'}`` (not in the queue).
"""

from __future__ import annotations

# KEYS: rules, queue, seq, admitted, used, bucket, left, total, holds, held.
# ARGV: user, join (1/0), draw.
DECIDE = """
local rules = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'pre', 'rate', 'ttl', 'share')
if not rules[1] then return {'lost'} end
local starts, ends, pre = tonumber(rules[1]), tonumber(rules[2]), tonumber(rules[3])
local rate, ttl = tonumber(rules[4]), tonumber(rules[5])
local share = tonumber(rules[6] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ends > 0 and now >= ends then return {'ended'} end
local user = ARGV[1]
if ARGV[2] == '1' then
  if now < starts - pre then return {'not_open', tostring(starts)} end
  if not redis.call('ZSCORE', KEYS[2], user) and not redis.call('ZSCORE', KEYS[4], user)
     and not redis.call('ZSCORE', KEYS[5], user) then
    if now < starts then
      redis.call('ZADD', KEYS[2], ARGV[3], user)
    else
      redis.call('ZADD', KEYS[2], 1 + redis.call('INCR', KEYS[3]), user)
    end
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for i = 1, #expired do
  local h = redis.call('HGET', KEYS[9], expired[i])
  if h then
    redis.call('HDEL', KEYS[9], expired[i])
    redis.call('DECRBY', KEYS[10], h)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local left = tonumber(redis.call('GET', KEYS[7]) or '0')
if now >= starts then
  local b = redis.call('HMGET', KEYS[6], 'tokens', 'ts')
  local tokens, ts = tonumber(b[1] or '0'), tonumber(b[2] or tostring(starts))
  tokens = math.min(rate, tokens + (now - ts) * rate / 1000)
  local free = left - tonumber(redis.call('GET', KEYS[10]) or '0')
  local n = 0
  if free > 0 then
    n = math.min(math.floor(tokens), math.ceil(free / share), redis.call('ZCARD', KEYS[2]))
  end
  if n > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[2], n)
    local held = 0
    for i = 1, #popped, 2 do
      local h = math.min(share, free - held)
      redis.call('ZADD', KEYS[4], now + ttl, popped[i])
      redis.call('HSET', KEYS[9], popped[i], h)
      held = held + h
    end
    redis.call('INCRBY', KEYS[10], held)
    redis.call('INCRBY', KEYS[8], n)
    tokens = tokens - n
  end
  redis.call('HSET', KEYS[6], 'tokens', tostring(tokens), 'ts', tostring(now))
end
local expiry = redis.call('ZSCORE', KEYS[4], user) or redis.call('ZSCORE', KEYS[5], user)
if expiry then return {'admitted', expiry} end
local rank = redis.call('ZRANK', KEYS[2], user)
if not rank then return {'unknown'} end
local position = rank + 1
if now < starts then position = 0 end
if left <= 0 then return {'sold_out', position, tostring(starts), rate} end
return {'waiting', position, tostring(starts), rate}
"""

# The end of a hold, shared by TAKE and RELEASE_HOLD: the admission moves to ``used`` (it
# keeps answering ``admitted``, and its token stays valid, until expiry) and its units stop
# being held. KEYS (of the caller): ... admitted, used, holds, held at 2, 3, 5, 6.
_END_HOLD = """
local h = redis.call('HGET', KEYS[5], ARGV[1])
if h then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('DECRBY', KEYS[6], h)
end
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if expiry then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], expiry, ARGV[1])
end
"""

# KEYS: rules, admitted, used, left, holds, held, taken, writes.  ARGV: user, units, mark.
# A reservation of the drop's options went through: what it took leaves ``left`` and the
# buyer's hold ends, in one step (a room Redis lost is left alone: the refresh rebuilds it).
# ``mark`` is ``writes`` as it was before the reservation began: if a refresh wrote since, its
# reading may already have left these units out, and subtracting them again would leave
# ``left`` low; answers 2 then, and the caller reads the stock port again (the rare case).
TAKE = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local units = tonumber(ARGV[2])
local left = tonumber(redis.call('GET', KEYS[4]) or '0')
redis.call('SET', KEYS[4], math.max(left - units, 0))
redis.call('INCRBY', KEYS[7], units)
{_END_HOLD}
if tonumber(redis.call('GET', KEYS[8]) or '0') ~= tonumber(ARGV[3]) then return 2 end
return 1
"""

# KEYS: rules, admitted, used, (unused), holds, held.  ARGV: user.
# The buyer's order was written (``used``), or the stock port refused the option they picked:
# their hold goes to the next in line.
RELEASE_HOLD = f"""
{_END_HOLD}
return 1
"""

# Refreshing ``left`` reads the stock port outside Redis, so a reading may be overtaken by a
# reservation before it is written. BEGIN notes ``taken`` (and bumps ``churn``, so that a
# refresh already reading learns something changed); WRITE stores the reading minus whatever
# was taken through the room since BEGIN. A reservation committed before the reading and
# taken after BEGIN is then subtracted twice (``left`` too low, never too high), so WRITE
# asks for another reading whenever anything was taken or another refresh began meanwhile.
# KEYS: taken, churn.  ARGV: bump (1/0).
BEGIN_REFRESH = """
local churn
if ARGV[1] == '1' then
  churn = redis.call('INCR', KEYS[2])
else
  churn = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), churn}
"""

# KEYS: rules, left, taken, churn, writes.  ARGV: units read, taken at BEGIN, churn at BEGIN.
# Returns 1 when the caller should read again.
WRITE_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local since = tonumber(redis.call('GET', KEYS[3]) or '0') - tonumber(ARGV[2])
redis.call('SET', KEYS[2], math.max(tonumber(ARGV[1]) - since, 0))
redis.call('INCR', KEYS[5])
if since > 0 or tonumber(redis.call('GET', KEYS[4]) or '0') ~= tonumber(ARGV[3]) then
  return 1
end
return 0
"""

# KEYS: the republish mark, the epoch.  The mark is gone if Redis lost its state meanwhile.
END_REPUBLISH = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
"""
