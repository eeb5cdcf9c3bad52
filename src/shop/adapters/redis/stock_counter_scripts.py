"""The Lua scripts of the counter strategy. Each runs atomically inside Redis.

Every script that sells or gives back units first checks two control keys: ``active`` must say
``counter`` (else a switch is moving the state: ``moved``), and the generation key must exist
(else Redis lost its data: ``nogen``, and the caller recovers from PostgreSQL). A counter key
that is missing reads as ``missing``, never as zero or as a fresh key: INCR on a missing key
would invent stock. Checks all come before any write, so a refused call changes nothing — a
counter never goes negative and a multi-line reservation never half-happens.

A record is ``status|created_ms|lines|buyer`` with status ``p`` (pending) or ``c`` (confirmed)
and lines ``id:qty,id:qty`` in option-id order; the buyer comes last so it may hold any
character.
"""

from __future__ import annotations

_CONTROL = """
if redis.call('GET', KEYS[1]) ~= 'counter' then return {'moved'} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'nogen'} end
"""

# KEYS: active, generation, records, pending, then (left, held, buyers) per line
# ARGV: key, buyer ('' for none), lines, then (option_id, quantity, limit) per line, limit 0
# for none (a drop's options carry the drop's limit, the others the shop's).
# Answers the generation with the reservation: the order insert's fencing token.
RESERVE = (
    _CONTROL
    + """
local key = ARGV[1]
local existing = redis.call('HGET', KEYS[3], key)
if existing then return {'exists', existing, redis.call('GET', KEYS[2])} end
local buyer = ARGV[2]
local n = (#KEYS - 4) / 3
for i = 0, n - 1 do
  local k, a = 5 + 3 * i, 4 + 3 * i
  local quantity, limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local left = redis.call('GET', KEYS[k])
  if not left then return {'missing', ARGV[a]} end
  if tonumber(left) < quantity then return {'soldout', ARGV[a]} end
  if limit > 0 and tonumber(redis.call('HGET', KEYS[k + 2], buyer) or '0') + quantity > limit then
    return {'limit', ARGV[a], limit}
  end
end
for i = 0, n - 1 do
  local k = 5 + 3 * i
  local quantity = tonumber(ARGV[5 + 3 * i])
  redis.call('DECRBY', KEYS[k], quantity)
  redis.call('HSET', KEYS[k + 1], key, quantity)
  if buyer ~= '' then redis.call('HINCRBY', KEYS[k + 2], buyer, quantity) end
end
local now = redis.call('TIME')
local ms = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('HSET', KEYS[3], key, 'p|' .. ms .. '|' .. ARGV[3] .. '|' .. buyer)
redis.call('ZADD', KEYS[4], ms, key)
return {'ok', redis.call('GET', KEYS[2])}
"""
)

# KEYS: active, generation, records, pending.  ARGV: key
CONFIRM = (
    _CONTROL
    + """
local record = redis.call('HGET', KEYS[3], ARGV[1])
if not record then return {'unknown'} end
if string.sub(record, 1, 1) == 'p' then
  redis.call('HSET', KEYS[3], ARGV[1], 'c' .. string.sub(record, 2))
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return {'ok'}
"""
)

# KEYS: active, generation, records, pending, then (left, held, buyers) per line
# ARGV: key, lines the caller read from the record, then (option_id, quantity) per line
RELEASE = (
    _CONTROL
    + """
local key = ARGV[1]
local record = redis.call('HGET', KEYS[3], key)
if not record then return {'unknown'} end
local _, _, lines, buyer = string.match(record, '^(%a)|(%d+)|([^|]*)|(.*)$')
if lines ~= ARGV[2] then return {'changed'} end
local n = (#KEYS - 4) / 3
for i = 0, n - 1 do
  if redis.call('EXISTS', KEYS[5 + 3 * i]) == 0 then return {'missing', ARGV[3 + 2 * i]} end
end
for i = 0, n - 1 do
  local k = 5 + 3 * i
  local quantity = tonumber(ARGV[4 + 2 * i])
  redis.call('INCRBY', KEYS[k], quantity)
  redis.call('HDEL', KEYS[k + 1], key)
  if buyer ~= '' and redis.call('HINCRBY', KEYS[k + 2], buyer, -quantity) <= 0 then
    redis.call('HDEL', KEYS[k + 2], buyer)
  end
end
redis.call('HDEL', KEYS[3], key)
redis.call('ZREM', KEYS[4], key)
return {'ok'}
"""
)

# KEYS: active, generation, records, then held per line.  ARGV: key, lines
RETIRE = (
    _CONTROL
    + """
local record = redis.call('HGET', KEYS[3], ARGV[1])
if not record or string.sub(record, 1, 1) ~= 'c' then return {'unknown'} end
local _, _, lines = string.match(record, '^(%a)|(%d+)|([^|]*)|')
if lines ~= ARGV[2] then return {'changed'} end
for i = 4, #KEYS do redis.call('HDEL', KEYS[i], ARGV[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
return {'ok'}
"""
)

# Restock and rebuild run while the caller holds the PostgreSQL fence exclusively, so no
# switch is reading the state: they only need the generation, not ``active == counter``.

# With a restock key, the units reach the counter once: only under the generation the
# PostgreSQL side was committed under (``stale`` otherwise: a rebuild or an import since then
# took the counter from PostgreSQL, units included), and only if the key is not recorded yet
# (``done``). The key is recorded in the same script as the INCRBY, so a retry after a crash
# either side of it adds nothing twice; with the counter ``missing`` it is recorded too,
# since the caller then rebuilds the counter from the ledger, which holds the units.
# KEYS: generation, left, restocks.  ARGV: units, key ('' for none), its generation
RESTOCK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'nogen' end
if ARGV[2] ~= '' then
  if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 'stale' end
  if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 'done' end
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'missing' end
redis.call('INCRBY', KEYS[2], ARGV[1])
return 'ok'
"""

# KEYS: generation, left, options.  ARGV: units, option_id
INSTALL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'nogen' end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX') then return 'exists' end
redis.call('SADD', KEYS[3], ARGV[2])
return 'ok'
"""

# An import (switch, rebuild, repair) writes the state in chunks, each one script that first
# checks the import's staging marker: a chunk after a loss writes nothing and says so.
# KEYS: staging, then one key per write.  ARGV: token, then (op, field, value) per write:
# op s = SET key value, h = HSET key field value, z = ZADD key value field, a = SADD key field.
IMPORT_CHUNK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do
  local a = 3 * i - 4
  local op, field, value = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if op == 's' then redis.call('SET', KEYS[i], value)
  elseif op == 'h' then redis.call('HSET', KEYS[i], field, value)
  elseif op == 'z' then redis.call('ZADD', KEYS[i], value, field)
  else redis.call('SADD', KEYS[i], field) end
end
return 1
"""

# Publishes an import: the generation is set only if the staging marker survived every
# chunk and the state has the size the importer wrote (a restart from an older snapshot
# could keep the marker but not every chunk).
# KEYS: staging, generation, options, records, pending.
# ARGV: token, generation, options, records, pending reservations expected.
PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
if redis.call('SCARD', KEYS[3]) ~= tonumber(ARGV[3])
  or redis.call('HLEN', KEYS[4]) ~= tonumber(ARGV[4])
  or redis.call('ZCARD', KEYS[5]) ~= tonumber(ARGV[5]) then
  return 'incomplete'
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 'ok'
"""
