"""The Lua scripts that make multi-step Redis operations atomic.

Every settling script acknowledges first and does nothing more when the entry
was not pending: a script whose answer was lost with its connection is run
again, and must not copy, requeue or dead-letter a message twice.

Each script touches keys of one queue (one hash slot) only, except the
``*_MANY`` scripts: they settle many deliveries, of any queues, in one call,
and serve single-node Redis only (see aq/transport/redis/batch.py).
``PUBLISH_MANY`` adds a turn's messages, to any streams, in one call (single-node
too: redis-py's cluster pipelines refuse scripts). Stream entries
carry two fields: ``b``, the message body, and ``n``, how many times the
message was delivered before it was last returned to a stream.
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "ACK_MANY",
    "DEAD_LETTER",
    "FORGET_IDLE_CONSUMERS",
    "ISOLATE",
    "LEAVE_GROUPS",
    "MOVE_DUE",
    "PUBLISH_MANY",
    "READ",
    "RECLAIM",
    "REPLY",
    "REPLY_ACK_MANY",
    "REQUEUE",
    "STORE_ACQUIRE_LEASE",
    "STORE_ACQUIRE_SLOT",
    "STORE_ADD_MEMBER",
    "STORE_DELETE_IF",
    "STORE_END_LEASE",
    "STORE_FINISH_JOIN",
    "STORE_JOIN",
    "STORE_QUEUE_FOR_SLOT",
    "STORE_RENEW_SLOT",
    "STORE_RESERVE_RATE",
    "STORE_SET",
    "STORE_SET_FENCED",
]

#: Read up to ARGV[3] new entries, from the first stream in KEYS (highest
#: priority) to the last. ARGV: group, consumer, count.
#: Returns {{stream, id, fields}, ...}.
READ = """
local out = {}
local want = tonumber(ARGV[3])
for _, key in ipairs(KEYS) do
  if want <= 0 then break end
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                         'STREAMS', key, '>')
  if res then
    for _, entry in ipairs(res[1][2]) do
      out[#out + 1] = {key, entry[1], entry[2]}
      want = want - 1
    end
  end
end
return out
"""

#: Add any number of messages to streams, as new entries (``n`` = 0).
#: Per message, KEYS: stream; ARGV: body. Returns the entry ids.
PUBLISH_MANY = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('XADD', KEYS[i], '*', 'b', ARGV[i], 'n', '0')
end
return out
"""

#: Settle: acknowledge and delete. KEYS: stream. ARGV: group, id.
ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""

#: ACK for any number of deliveries. Per delivery, KEYS: stream; ARGV: group, id.
#: Returns one XDEL count per delivery.
ACK_MANY = """
local out = {}
for i = 1, #KEYS do
  redis.call('XACK', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
  out[i] = redis.call('XDEL', KEYS[i], ARGV[2 * i])
end
return out
"""

#: REPLY, then ACK, for any number of deliveries, each pair in one step: a task's
#: reply is never sent without its message settled, nor the other way round.
#: Per delivery, KEYS: stream, reply stream, liveness key; ARGV: group, id, body,
#: ttl ms. The reply stream expires with the liveness key, as in REPLY.
#: Returns, per delivery, 1 if the reply was delivered.
REPLY_ACK_MANY = """
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = 3 * i, 4 * i
  local delivered = 0
  if redis.call('XACK', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2]) == 1 then
    local left = redis.call('PTTL', KEYS[k + 3])
    if left ~= -2 then
      if left < 0 then left = ARGV[a + 4] end
      redis.call('XADD', KEYS[k + 2], '*', 'b', ARGV[a + 3])
      redis.call('PEXPIRE', KEYS[k + 2], left)
      delivered = 1
    end
    redis.call('XDEL', KEYS[k + 1], ARGV[a + 2])
  end
  out[i + 1] = delivered
end
return out
"""

#: Return to the stream (at the end) and settle the old entry.
#: KEYS: stream. ARGV: group, id, body, deliveries so far.
REQUEUE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', 'b', ARGV[3], 'n', ARGV[4])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""

#: Move to the dead-letter stream with the reason, and settle.
#: KEYS: stream, dead stream. ARGV: group, id, body, reason, time, queue.
DEAD_LETTER = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'b', ARGV[3], 'reason', ARGV[4], 'at', ARGV[5],
           'queue', ARGV[6])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""

#: Move to the queue's isolation stream as a new message (``n`` = 0), and settle.
#: KEYS: stream, isolation stream. ARGV: group, id, body.
ISOLATE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'b', ARGV[3], 'n', '0')
return redis.call('XDEL', KEYS[1], ARGV[2])
"""

#: Move due delayed messages to their priority stream. Members are
#: "<priority digit>:<16-hex-digit nonce>:<body>"; a member of any other shape
#: (written by something else) goes to the dead-letter stream with a reason
#: instead, so one bad member never stops the queue's delayed messages.
#: KEYS: delayed zset, dead stream, then the streams of priority 0..9.
#: ARGV: now, limit, queue name. Returns {moved, next due score or false, malformed}.
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local bad = 0
for _, member in ipairs(due) do
  local level = tonumber(string.sub(member, 1, 1))
  if level and string.match(member, '^%d:%x+:') and string.sub(member, 19, 19) == ':' then
    redis.call('XADD', KEYS[level + 3], '*', 'b', string.sub(member, 20), 'n', '0')
  else
    redis.call('XADD', KEYS[2], '*', 'b', member, 'reason',
               'malformed entry in the delayed set (expected <priority>:<nonce>:<body>)',
               'at', ARGV[1], 'queue', ARGV[3])
    bad = bad + 1
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, nxt[2], bad} end
return {#due, false, bad}
"""

#: Claim entries idle longer than the visibility timeout (their worker died).
#: KEYS: stream. ARGV: group, consumer, min idle ms, count.
#: Returns {{id, fields, times delivered}, ...}.
RECLAIM = """
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                       'COUNT', ARGV[4])
local out = {}
for _, entry in ipairs(res[2]) do
  local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  local times = 1
  if info[1] then times = info[1][4] end
  out[#out + 1] = {entry[1], entry[2], times}
end
return out
"""

#: Append a reply to a producer's inbox stream if the producer is alive. A
#: stream, not a list: the producer reads without removing and trims only what
#: it has received, so a connection lost mid-read loses no reply.
#: The stream expires with the liveness key (never later), so the replies of a
#: producer that died go when it is declared dead, within ``reply_ttl``.
#: KEYS: reply stream, liveness key. ARGV: body, ttl ms (used only if the
#: liveness key has no expiry). Returns 1 if delivered.
REPLY = """
local left = redis.call('PTTL', KEYS[2])
if left == -2 then return 0 end
if left < 0 then left = ARGV[2] end
redis.call('XADD', KEYS[1], '*', 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], left)
return 1
"""

#: Remove a consumer from the group of each stream where it holds nothing; checked
#: and done in one step, so no pending entry is ever dropped.
#: KEYS: the streams of one queue. ARGV: group, consumer. Returns how many it left.
LEAVE_GROUPS = """
local left = 0
for i = 1, #KEYS do
  local ok, pending = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[1], '-', '+', 1, ARGV[2])
  if ok and #pending == 0 then
    redis.pcall('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], ARGV[2])
    left = left + 1
  end
end
return left
"""

#: Remove consumers that hold nothing and have not been heard from for ARGV[2]
#: ms (workers that died): a live worker talks to Redis every second or so.
#: Checked and deleted in one step, so no pending entry is ever dropped.
#: KEYS: stream. ARGV: group, idle ms, the caller's own name (never removed).
#: Returns how many were removed.
FORGET_IDLE_CONSUMERS = """
local removed = 0
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
for _, info in ipairs(consumers) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2])
     and fields['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
"""


# -- the store (aq/transport/redis/store.py) ----------------------------------------
# A lease's key holds "owner<TAB>token" and expires; its token counter lives
# beside it (same hash slot) and outlives it, so tokens keep growing.

#: Add ARGV[1] to the set KEYS[1], expire it in ARGV[2] ms; return its size.
STORE_ADD_MEMBER = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('SCARD', KEYS[1])
"""

#: Joins, any number in one call (the calls of one event-loop turn are merged):
#: for each, its parts (hash index -> part) and its state (hash: size, owner,
#: done) are two KEYS, and the index ('' for none), the part, the size ('' for
#: none) and the ttl (ms) four ARGV. Returns, for each in order, {count, size or
#: -1, 0} or, for the completer (and its index again until the join is done),
#: {count, size, parts as HGETALL gives them}. A done join records nothing more.
#: SET any number of keys, each with its TTL, each only if absent when asked.
#: Per key, KEYS: the key; ARGV: value, TTL in ms, 1 for "only if absent" (else 0).
#: Returns, per key, 1 if it was written, else 0.
STORE_SET = """
local out = {}
for i = 1, #KEYS do
  local value, ttl, nx = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if nx == '1' then
    out[i] = redis.call('SET', KEYS[i], value, 'PX', ttl, 'NX') and 1 or 0
  else
    redis.call('SET', KEYS[i], value, 'PX', ttl)
    out[i] = 1
  end
end
return out
"""

STORE_JOIN = """
local out = {}
for g = 1, #KEYS / 2 do
  local parts, state = KEYS[2 * g - 1], KEYS[2 * g]
  local index, part, given, ttl = ARGV[4 * g - 3], ARGV[4 * g - 2], ARGV[4 * g - 1], ARGV[4 * g]
  local done = redis.call('HEXISTS', state, 'done') == 1
  if index ~= '' and not done then redis.call('HSETNX', parts, index, part) end
  if given ~= '' then redis.call('HSETNX', state, 'size', given) end
  redis.call('PEXPIRE', parts, ttl)
  redis.call('PEXPIRE', state, ttl)
  local count = redis.call('HLEN', parts)
  local size = tonumber(redis.call('HGET', state, 'size') or '-1')
  local result = {count, size, 0}
  if not done and size >= 0 and count >= size then
    local me = index == '' and '-1' or index
    local owner = redis.call('HGET', state, 'owner')
    if not owner then
      redis.call('HSET', state, 'owner', me)
      owner = me
    end
    if owner == me then result[3] = redis.call('HGETALL', parts) end
  end
  out[g] = result
end
return out
"""

#: The join at KEYS[1] (parts) / KEYS[2] (state) is done: drop its parts, keep
#: its state ARGV[1] ms more.
STORE_FINISH_JOIN = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'done', '1')
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

#: Take the lease KEYS[1] (token counter KEYS[2]) for owner ARGV[1] for ARGV[2]
#: ms; the counter is kept ARGV[3] ms. Returns the token, or false if another
#: owner holds it. Its own owner renews it and keeps its token.
STORE_ACQUIRE_LEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local owner, token = string.match(held, '^(.*)\t(%d+)$')
  if owner ~= ARGV[1] then return false end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(token)
end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. '\t' .. token, 'PX', ARGV[2])
return token
"""

#: If the lease KEYS[1] is still "ARGV[1]" (owner<TAB>token): with ARGV[2] a
#: number of ms, extend it by that; with ARGV[2] empty, delete it. Returns 1 if
#: it was still held, else 0.
STORE_END_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

#: Write ARGV[1] to KEYS[1] for ARGV[2] ms unless its fence KEYS[2] has seen a
#: token above ARGV[3] or, when the lease's key KEYS[3] is given (single-node
#: Redis: it lies in another hash slot), the lease is not "ARGV[4]" any more.
#: Returns 1 if written, else 0.
STORE_SET_FENCED = """
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) < seen then return 0 end
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 1
"""

#: Delete KEYS[1] if its value is ARGV[1]. Returns 1 if deleted, else 0.
STORE_DELETE_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

#: GCRA on the theoretical arrival time kept at KEYS[1], in microseconds of the
#: server's clock. ARGV: interval (us), burst, most a place may lie ahead (us),
#: places asked for. Reserves the earliest places that lie within that bound.
#: Returns {places granted, wait in us for the first place (granted, or next)}.
STORE_RESERVE_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local base = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local first = base + interval - tonumber(ARGV[2]) * interval - now
local granted = math.min(tonumber(ARGV[4]),
                         math.floor((tonumber(ARGV[3]) - first) / interval) + 1)
if granted <= 0 then return {0, first} end
local due = base + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', due), 'PX',
           math.floor((due - now) / 1000) + 1)
return {granted, first}
"""

#: Slots in the sorted set KEYS[1]: holder -> expiry (ms of the server's clock).
#: Drops expired slots, then gives holder ARGV[1] a slot for ARGV[3] ms if it has
#: one or fewer than ARGV[2] are held. Returns 1 if it holds one now, else 0.
STORE_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

#: Extend holder ARGV[1]'s unexpired slot in KEYS[1] to ARGV[2] ms from now.
#: Returns 1 if it held one, else 0.
STORE_RENEW_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if held <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

#: STORE_ACQUIRE_SLOT in turn. KEYS: the slots, the line (waiter -> when it first
#: asked, ms) and when each waiter last asked. ARGV: holder, limit, slot ttl
#: (ms), waiter, line ttl (ms). Waiters not seen for the line ttl leave the
#: line; a slot is given while more are free than waiters stand before this one.
#: Returns {1, 0} if it holds a slot now, else {0, waiters ahead}.
STORE_QUEUE_FOR_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, line_ttl = tonumber(ARGV[3]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - line_ttl)) do
  redis.call('ZREM', KEYS[2], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - line_ttl)
local rank = redis.call('ZRANK', KEYS[2], ARGV[4])
local ahead = rank or redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1])
   or tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1]) > ahead then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
  if rank then
    redis.call('ZREM', KEYS[2], ARGV[4])
    redis.call('ZREM', KEYS[3], ARGV[4])
  end
  return {1, 0}
end
if not rank then redis.call('ZADD', KEYS[2], now, ARGV[4]) end
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('PEXPIRE', KEYS[2], line_ttl)
redis.call('PEXPIRE', KEYS[3], line_ttl)
return {0, ahead}
"""
