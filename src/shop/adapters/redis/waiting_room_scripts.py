"""The waiting room's Lua scripts, one per decision; each runs atomically inside Redis on
Redis's clock (``TIME``), so every app process decides alike.

Keys of drop N (hash-tagged ``{room:N}`` so they share a cluster slot):
``rules`` (hash: starts, ends, pre, rate, ttl in ms/units), ``queue`` (zset user → place:
pre-queue joiners draw a place in [0, 1) at join, later arrivals get 1 + arrival number, so
every pre-queue place comes first and they are ordered at the start by the draw),
``seq`` (arrival counter), ``admitted`` (zset user → admission expiry ms, not used yet),
``used`` (zset user → expiry ms, admissions that became orders), ``bucket`` (hash tokens,
ts: the admission token bucket, holding at most one second of admissions), ``left`` (units
the stock port says are left of the drop's options), ``total`` (admissions ever made).

ADMIT (shared by join and poll) first drops expired admissions (their slots come back), then
admits ``min(tokens, left − unused admissions, waiting)`` from the head of the queue.
Answers: ``{'lost'}`` (no rules: Redis lost the room), ``{'ended'}``, ``{'not_open', starts}``,
``{'admitted', expiry}``, ``{'waiting', position (0 before the start), starts, rate}``,
``{'sold_out', position, starts, rate}``, ``{'unknown'}`` (not in the queue).
"""

from __future__ import annotations

# KEYS: rules, queue, seq, admitted, used, bucket, left, total (admissions ever made).
# ARGV: user, join (1/0), draw.
_DECIDE = """
local rules = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'pre', 'rate', 'ttl')
if not rules[1] then return {'lost'} end
local starts, ends, pre = tonumber(rules[1]), tonumber(rules[2]), tonumber(rules[3])
local rate, ttl = tonumber(rules[4]), tonumber(rules[5])
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
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local left = tonumber(redis.call('GET', KEYS[7]) or '0')
if now >= starts then
  local b = redis.call('HMGET', KEYS[6], 'tokens', 'ts')
  local tokens, ts = tonumber(b[1] or '0'), tonumber(b[2] or tostring(starts))
  tokens = math.min(rate, tokens + (now - ts) * rate / 1000)
  local capacity = left - redis.call('ZCARD', KEYS[4])
  local n = math.min(math.floor(tokens), capacity, redis.call('ZCARD', KEYS[2]))
  if n > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[2], n)
    for i = 1, #popped, 2 do redis.call('ZADD', KEYS[4], now + ttl, popped[i]) end
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

DECIDE = _DECIDE

# KEYS: admitted, used.  ARGV: user.  An admission that became an order frees its slot (the
# unit is now reserved, so ``left`` counts it) but keeps answering ``admitted`` until expiry.
USED = """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
return 1
"""

# Refreshing ``left`` is read-then-write (the stock port is read outside Redis), so two
# refreshes racing could leave the older reading last. One refresher per drop at a time:
# TRY takes the refresh lock, or marks the room dirty if another refresher holds it; DONE
# writes the reading, releases the lock and says whether it went dirty meanwhile (then the
# holder reads again). Both are single scripts, so a change is never left unread: its
# refresher either got the lock (and read after the change) or set the flag before the
# holder's DONE.
# KEYS: lock, dirty.  ARGV: token, lock ms.
REFRESH_TRY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 0
"""

# KEYS: lock, dirty, left.  ARGV: token, units.
REFRESH_DONE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 1 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[1])
return redis.call('DEL', KEYS[2])
"""

# KEYS: the republish mark, the epoch.  The mark is gone if Redis lost its state meanwhile.
END_REPUBLISH = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
"""
