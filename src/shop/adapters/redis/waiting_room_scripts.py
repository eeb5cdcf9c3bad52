"""The waiting room's Lua scripts, one per decision; each runs atomically inside Redis on
Redis's clock (``TIME``), so every app process decides alike.

Keys of drop N (hash-tagged ``{room:N}`` so they share a cluster slot): ``rules`` (hash:
starts, ends, pre, rate, ttl in ms/units, share = the per-buyer limit), ``queue`` (zset user
→ place: pre-queue joiners draw a place in [0, 1) at join, later arrivals get 1 + arrival
number, so every pre-queue place comes first and they are ordered at the start by the draw),
``seq`` (arrival counter), ``admitted`` (zset user → admission expiry ms, still holding
units), ``used`` (zset user → expiry ms, admissions whose hold ended or is in a refusal's
grace: they answer ``admitted`` until expiry), ``bucket`` (hash tokens, ts: the admission
token bucket, holding at most one second of admissions), ``left`` (units the stock port has
left of the drop's options), ``total`` (admissions ever made), ``holds`` (hash user → units
its admission holds), ``held`` (the sum of ``holds``), ``taken`` (units reserved through the
room, ever: the refresh's correction), ``tickets`` (one per refresh that begins),
``written`` (the ticket of the last refresh written) and ``writes`` (refreshes written).

The slot rule (``shop.domain.drops.queue``): an admission holds ``share`` units, or what is
free if less; nobody is admitted unless one unit is free of holds (``left − held ≥ 1``).
A hold ends when the buyer's order reserves (``TAKE``: ``left`` drops by what it took and the
hold is freed in the same script, so for that instant nothing is counted twice or not at
all), when the buyer's order is written (``RELEASE_HOLD``), or when it expires (``DECIDE``). A
buyer refused for the option they picked keeps the hold for a short grace only (``REFUSED``).

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
local expiry = redis.call('ZSCORE', KEYS[5], user) or redis.call('ZSCORE', KEYS[4], user)
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
  redis.call('ZADD', KEYS[3], 'NX', expiry, ARGV[1])
end
"""

# KEYS: writes, admitted, used.  ARGV: user, pin ms.
# A reservation of the drop's options is about to begin: answers the mark for ``TAKE``, and
# keeps the buyer's hold (if any) from expiring before ``TAKE`` ends it, for ``pin`` at least:
# an expiry (or a refusal's grace) running out mid-purchase would free units the purchase is
# taking. The admission's own expiry goes to ``used`` (what the buyer is told stays the same).
RESERVING = """
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if expiry then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[3], 'NX', expiry, ARGV[1])
  redis.call('ZADD', KEYS[2], math.max(tonumber(expiry), now + tonumber(ARGV[2])), ARGV[1])
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
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
# The buyer's order was written (``used``): their hold, if ``TAKE`` left any, is over.
RELEASE_HOLD = f"""
{_END_HOLD}
return 1
"""

# KEYS: admitted, used.  ARGV: user, grace ms.
# The stock port refused the option an admitted buyer picked. They keep their hold for
# ``grace`` (time to pick another option, with the unit still theirs), then it goes to the
# next in line (``DECIDE`` ends it like any expired admission). Their admission itself keeps
# its expiry: ``used`` answers for it (the hold's shorter one stays in ``admitted``).
REFUSED = """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'NX', expiry, ARGV[1])
redis.call('ZADD', KEYS[1], math.min(tonumber(expiry), now + tonumber(ARGV[2])), ARGV[1])
return 1
"""

# Refreshing ``left`` reads the stock port outside Redis, so a reading may be overtaken
# before it is written: by a reservation (``left`` would be too high), or by units coming
# back and a later refresh that saw them (too low). BEGIN gives the refresh a ticket and notes
# ``taken``; WRITE stores the reading minus whatever was taken through the room since BEGIN,
# unless a refresh with a later ticket has written already (units that came back after this
# refresh began have their own, later refresh: an older reading never overwrites a newer).
# A reservation committed before the reading but taken after BEGIN is subtracted twice, so
# WRITE asks for another reading (a new ticket) whenever anything was taken meanwhile.
# KEYS: taken, tickets.
BEGIN_REFRESH = """
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('INCR', KEYS[2])}
"""

# KEYS: rules, left, taken, written (the ticket of the last write), writes.
# ARGV: units read, taken at BEGIN, ticket.  Returns 1 when the caller should read again.
WRITE_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[3]) then return 0 end
local since = tonumber(redis.call('GET', KEYS[3]) or '0') - tonumber(ARGV[2])
redis.call('SET', KEYS[2], math.max(tonumber(ARGV[1]) - since, 0))
redis.call('SET', KEYS[4], ARGV[3])
redis.call('INCR', KEYS[5])
if since > 0 then return 1 end
return 0
"""

# KEYS: the republish mark, the epoch.  The mark is gone if Redis lost its state meanwhile.
END_REPUBLISH = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
"""
