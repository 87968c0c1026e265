/*
 * store_redis_script - the Lua script that keeps the rate-limit state in
 * Redis. One script, three operations, so one SCRIPT LOAD and one digest.
 *
 * It runs atomically inside Redis, on the Redis server clock (TIME), so
 * every MTA of a fleet sees the same buckets at the same time, and a
 * check-and-charge of several buckets is all-or-none without locks.
 * All keys are passed in KEYS[] (never built here), so Redis Cluster can
 * route the call by the account's hash tag.
 *
 * Call: KEYS = the buckets, then the volume windows, then (charge and
 *	       refund) the call's "once" key. Buckets of several hash tags
 *	       (account, domain, class scope) may share one call (store.h).
 *	ARGV = op ("charge", "refund", "peek"), nb, nw, once_ttl_ms (0: no
 *	       once key),
 *	       per bucket 8 numbers (BUCKET_ARGS): count, tu (units per
 *	       token; 0 = a calendar window), refill (units per ms), cost,
 *	       b0, b1, b2, b3 (calendar window: the boundaries of three
 *	       windows in ms; 0 for a token bucket),
 *	       per window: period_ms, at_ms (refund: the clock of the charge),
 *	       optional: clock offset in ms (tests only; production sends none).
 *	So the first per-window argument is ARGV[5 + 8 * nb]. Parts added
 *	later append their own arguments after the volume windows' and
 *	before the clock offset, and say so here.
 *
 * Account safety part (store.h "Account safety"; every op sends its
 *	count, 0 but for a charge with one): at sa = 5 + 8 * nb + 2 * nw,
 *	ns = the number of its arguments that follow (so the clock offset
 *	is ARGV[sa + 1 + ns]): suspend_for_ms, account, nc, nn, per count
 *	rule 5: kind ("d": distinct, HyperLogLog; "r": refused events; "s":
 *	admitted events in slots of period/60, as a volume window, never
 *	tripping here: the sent count of bounce-rate and complaint-rate),
 *	element ("" = nothing to add), limit, period_ms, rule text; per
 *	threshold 2: bucket (1-based), percent. Its keys follow the once
 *	key (or the windows when there is none): the suspension hash, the
 *	nc count keys, the nn threshold keys.
 *	A suspension stops the charge before any bucket is read; a count
 *	beyond its limit suspends the account (hash: since, until, by,
 *	reason, account; PEXPIRE suspend_for_ms), starts that count afresh
 *	and stops the charge; thresholds fire after an admitted charge,
 *	each SET NX for as long as the bucket stays at or above it (a
 *	calendar window: until it ends), its TTL renewed when it holds.
 *
 * Suppression (suppress.h), within the safety part: a recipient event
 *	may end the safety arguments with two more, the recipient address
 *	and "s" (stop) or "n" (note), and its keys with the account's
 *	suppression list (a sorted set of address -> expiry ms). Checked
 *	after the suspension: an entry that has not expired stops the
 *	charge (state 3, until = its expiry) before any bucket is read, so
 *	a refused recipient costs nothing; with "n" (suppressed tag) the
 *	charge goes on as usual and an admitted one answers state 3.
 *
 * Once key: names the call by an id no other call has (store_redis.c),
 * under the account's hash tag. A charge that was admitted and every
 * refund store their reply in it for once_ttl_ms; a call that finds it
 * is a replay (a retry after the connection died with the first attempt
 * run) and gets the stored reply, changing nothing. So a retry never
 * charges or refunds twice. A refused charge changed nothing and stores
 * nothing: its replay is a fresh check.
 *
 * Bucket: a hash {u = units used, t = ms when u was true}. A token is tu
 * units and refill units come back per ms (store_redis.c reduces
 * count/period by their gcd), so every value is an integer below 2^53
 * and exact in Lua's doubles; numbers go back to Redis through
 * string.format('%.0f') because Redis would truncate fractions and may
 * print large doubles in exponent form. A key expires the moment its
 * bucket is full again, so idle accounts cost no memory.
 *
 * Calendar window: a hash {s = start of the window counted (ms), n =
 * tokens used in it}. The window is the one of [b0,b1), [b1,b2), [b2,b3)
 * that holds the server clock (charge, peek) and [b1,b2) for a refund
 * (ratelimit.c computes the bounds around the charge's clock); a clock
 * outside all three is an error reply (clock skew: the store fails,
 * OnStoreFailure decides). A hash whose s is another window's counts
 * zero; a refund only ever gives back to the window it names. The key
 * expires when its window ends.
 *
 * Volume window: a hash of slot index -> events, slot length period/60.
 * It counts the slots of the last period, so it never counts an event
 * older than the period and may miss up to one slot's worth at the old
 * end; 60 fields at most per window, the key expires after a quiet period.
 *
 * Returns: charge {admitted, over (1-based, 0 = none), retry_ms (-1 =
 * never), now, volume...}, and with a safety part: state (0, 1 =
 * suspended, 2 = suspended by this charge's count, 3 = the recipient is
 * suppressed), by, reason, until,
 * tripped (1-based count rule, 0), figure, nfired, then per fired
 * threshold: index (0-based), tokens used, ms when full again (a
 * stopped charge: admitted 0, over 0, volumes 0; a replay from the once
 * key: no safety part); peek {u, full_in_ms} per bucket (a calendar
 * window: tokens used, ms until it ends), then now; refund now.
 */
#include "config.h"

#include <stddef.h>

#include "store_redis.h"

const char store_redis_script[] =
	"local op, nb, nw, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local BA = 8\n"
	"local wa = 5 + BA * nb\n"
	"local once = ttl > 0 and KEYS[nb + nw + 1] or nil\n"
	"if once then\n"
	"  local seen = redis.call('GET', once)\n"
	"  if seen then\n"
	"    local res = {}\n"
	"    for x in string.gmatch(seen, '%S+') do res[#res + 1] = tonumber(x) end\n"
	"    if op == 'refund' then return res[1] end\n"
	"    return res\n"
	"  end\n"
	"end\n"
	"local sa = wa + 2 * nw\n"
	"local ns = tonumber(ARGV[sa]) or 0\n"
	"local tm = redis.call('TIME')\n"
	"local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)"
	" + (tonumber(ARGV[sa + 1 + ns]) or 0)\n"
	"local function int(x) return string.format('%.0f', x) end\n"
	"local function remember(res)\n"
	"  if not once then return end\n"
	"  local s = {}\n"
	"  for i = 1, #res do s[i] = int(res[i]) end\n"
	"  redis.call('SET', once, table.concat(s, ' '), 'PX', ttl)\n"
	"end\n"
	"local function ceildiv(a, b)\n"
	"  local q = math.floor(a / b)\n"
	"  if q * b < a then q = q + 1 end\n"
	"  return q\n"
	"end\n"
	"local function bucket(i)\n"
	"  local a = 5 + BA * (i - 1)\n"
	"  return tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])\n"
	"end\n"
	"local function cal(i, at)\n"
	"  local a = 5 + BA * (i - 1) + 4\n"
	"  for k = 0, 2 do\n"
	"    local s, e = tonumber(ARGV[a + k]), tonumber(ARGV[a + k + 1])\n"
	"    if at >= s and at < e then return s, e end\n"
	"  end\n"
	"  return nil\n"
	"end\n"
	"local function calused(key, s)\n"
	"  local v = redis.call('HMGET', key, 's', 'n')\n"
	"  if tonumber(v[1]) == s then return tonumber(v[2]) or 0 end\n"
	"  return 0\n"
	"end\n"
	"local skew = 'bulkmilter script: server clock outside the calendar windows sent (clock skew)'\n"
	"local function level(key, refill)\n"
	"  local v = redis.call('HMGET', key, 'u', 't')\n"
	"  local u, at = tonumber(v[1]), tonumber(v[2])\n"
	"  if not u or not at then return 0, now end\n"
	"  if now > at then\n"
	"    u = math.max(0, u - (now - at) * refill)\n"
	"    at = now\n"
	"  end\n"
	"  return u, at\n"
	"end\n"
	"local function save(key, u, at, refill)\n"
	"  if u <= 0 then redis.call('DEL', key) return end\n"
	"  redis.call('HSET', key, 'u', int(u), 't', int(at))\n"
	"  redis.call('PEXPIRE', key, int(at - now + ceildiv(u, refill)))\n"
	"end\n"
	"local function slots(period)\n"
	"  local len = math.max(1, math.floor(period / 60))\n"
	"  return len, math.floor(period / len)\n"
	"end\n"
	"local function stopped(state, by, reason, untl, trip, fig)\n"
	"  local res = {0, 0, 0, now}\n"
	"  for j = 1, nw do res[4 + j] = 0 end\n"
	"  for _, x in ipairs({state, by, reason, untl, trip, fig, 0}) do res[#res + 1] = x end\n"
	"  return res\n"
	"end\n"
	"if op == 'charge' then\n"
	"  local sk, sfor, acct, nc, nn\n"
	"  local noted = false\n"
	"  if ns > 0 then\n"
	"    sk = nb + nw + (once and 1 or 0) + 1\n"
	"    sfor, acct = tonumber(ARGV[sa + 1]), ARGV[sa + 2]\n"
	"    nc, nn = tonumber(ARGV[sa + 3]), tonumber(ARGV[sa + 4])\n"
	"    local v = redis.call('HMGET', KEYS[sk], 'by', 'reason', 'until')\n"
	"    if v[1] then return stopped(1, v[1], v[2] or '', tonumber(v[3]) or 0, 0, 0) end\n"
	"    local sp = sa + 4 + 5 * nc + 2 * nn + 1\n"
	"    if ns >= sp + 1 - sa and ARGV[sp] ~= '' then\n"
	"      local e = tonumber(redis.call('ZSCORE', KEYS[sk + nc + nn + 1], ARGV[sp]))\n"
	"      if e and e > now then\n"
	"        if ARGV[sp + 1] == 'n' then noted = true\n"
	"        else return stopped(3, '', '', e, 0, 0) end\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  local over, retry, us, ats = 0, 0, {}, {}\n"
	"  for i = 1, nb do\n"
	"    local count, tu, refill, cost = bucket(i)\n"
	"    local excess, wait\n"
	"    if tu == 0 then\n"
	"      local s, e = cal(i, now)\n"
	"      if not s then return redis.error_reply(skew) end\n"
	"      us[i], ats[i] = calused(KEYS[i], s) + cost, s\n"
	"      excess, wait = us[i] - count, e - now\n"
	"    else\n"
	"      local u, at = level(KEYS[i], refill)\n"
	"      us[i], ats[i] = u + cost * tu, at\n"
	"      excess = us[i] - count * tu\n"
	"      if excess > 0 then wait = at - now + ceildiv(excess, refill) end\n"
	"    end\n"
	"    if excess > 0 then\n"
	"      if over == 0 then over = i end\n"
	"      if cost > count then retry = -1\n"
	"      elseif retry >= 0 then retry = math.max(retry, wait) end\n"
	"    end\n"
	"  end\n"
	"  if ns > 0 then\n"
	"    local trip, fig = 0, 0\n"
	"    for c = 1, nc do\n"
	"      local a = sa + 4 + 5 * (c - 1)\n"
	"      local key, kind, el = KEYS[sk + c], ARGV[a + 1], ARGV[a + 2]\n"
	"      local limit, period = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
	"      local n\n"
	"      if kind == 'd' and el ~= '' then\n"
	"        if redis.call('PFADD', key, el) == 1 then\n"
	"          n = redis.call('PFCOUNT', key)\n"
	"          if n == 1 then redis.call('PEXPIRE', key, int(period)) end\n"
	"        end\n"
	"      elseif kind == 'r' and over > 0 then\n"
	"        n = redis.call('INCR', key)\n"
	"        if n == 1 then redis.call('PEXPIRE', key, int(period)) end\n"
	"      elseif kind == 's' and over == 0 then\n"
	"        local len = slots(period)\n"
	"        redis.call('HINCRBY', key, int(math.floor(now / len)), 1)\n"
	"        redis.call('PEXPIRE', key, int(period))\n"
	"      end\n"
	"      if n and n > limit and trip == 0 then trip, fig = c, n end\n"
	"    end\n"
	"    if trip > 0 then\n"
	"      local rule = ARGV[sa + 4 + 5 * (trip - 1) + 5]\n"
	"      local why = rule .. ' (' .. int(fig) .. ')'\n"
	"      redis.call('DEL', KEYS[sk], KEYS[sk + trip])\n"
	"      redis.call('HSET', KEYS[sk], 'since', int(now), 'until', int(now + sfor), 'by', rule,"
	" 'reason', why, 'account', acct)\n"
	"      redis.call('PEXPIRE', KEYS[sk], int(sfor))\n"
	"      return stopped(2, rule, why, now + sfor, trip, fig)\n"
	"    end\n"
	"  end\n"
	"  local res = {over == 0 and 1 or 0, over, retry, now}\n"
	"  for j = 1, nw do\n"
	"    local key, period = KEYS[nb + j], tonumber(ARGV[wa + 2 * (j - 1)])\n"
	"    local len, n = slots(period)\n"
	"    local cur = math.floor(now / len)\n"
	"    local h, sum = redis.call('HGETALL', key), 0\n"
	"    for k = 1, #h, 2 do\n"
	"      if tonumber(h[k]) <= cur - n then redis.call('HDEL', key, h[k])\n"
	"      else sum = sum + tonumber(h[k + 1]) end\n"
	"    end\n"
	"    res[4 + j] = sum\n"
	"    if over == 0 then\n"
	"      redis.call('HINCRBY', key, int(cur), 1)\n"
	"      redis.call('PEXPIRE', key, int(period))\n"
	"    end\n"
	"  end\n"
	"  if over == 0 then\n"
	"    for i = 1, nb do\n"
	"      local _, tu, refill = bucket(i)\n"
	"      if tu == 0 then\n"
	"        local _, e = cal(i, now)\n"
	"        redis.call('HSET', KEYS[i], 's', int(ats[i]), 'n', int(us[i]))\n"
	"        redis.call('PEXPIRE', KEYS[i], int(e - now))\n"
	"      else\n"
	"        save(KEYS[i], us[i], ats[i], refill)\n"
	"      end\n"
	"    end\n"
	"    remember(res)\n"
	"  end\n"
	"  if ns > 0 then\n"
	"    local fired = {}\n"
	"    for t = 1, (over == 0 and nn or 0) do\n"
	"      local a = sa + 4 + 5 * nc + 2 * (t - 1)\n"
	"      local i, pct = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
	"      local count, tu, refill = bucket(i)\n"
	"      local T = ceildiv(pct * count, 100)\n"
	"      local used, ttl, resets\n"
	"      if tu == 0 then\n"
	"        local _, e = cal(i, now)\n"
	"        if us[i] >= T then used, ttl, resets = us[i], e - now, e end\n"
	"      elseif us[i] > (T - 1) * tu then\n"
	"        used = ceildiv(us[i], tu)\n"
	"        ttl = ats[i] - now + ceildiv(us[i] - (T - 1) * tu, refill)\n"
	"        resets = ats[i] + ceildiv(us[i], refill)\n"
	"      end\n"
	"      if ttl then\n"
	"        local key = KEYS[sk + nc + t]\n"
	"        if redis.call('SET', key, '1', 'NX', 'PX', int(math.max(1, ttl))) then\n"
	"          fired[#fired + 1] = {t - 1, used, resets}\n"
	"        else redis.call('PEXPIRE', key, int(math.max(1, ttl))) end\n"
	"      end\n"
	"    end\n"
	"    local st = (noted and over == 0) and 3 or 0\n"
	"    for _, x in ipairs({st, '', '', 0, 0, 0, #fired}) do res[#res + 1] = x end\n"
	"    for _, f in ipairs(fired) do\n"
	"      for _, x in ipairs(f) do res[#res + 1] = x end\n"
	"    end\n"
	"  end\n"
	"  return res\n"
	"elseif op == 'refund' then\n"
	"  for i = 1, nb do\n"
	"    local _, tu, refill, cost = bucket(i)\n"
	"    if tu == 0 then\n"
	"      local s = tonumber(ARGV[5 + BA * (i - 1) + 5])\n"
	"      local n = calused(KEYS[i], s)\n"
	"      if n > cost then redis.call('HSET', KEYS[i], 'n', int(n - cost))\n"
	"      elseif n > 0 then redis.call('DEL', KEYS[i]) end\n"
	"    else\n"
	"      local u, at = level(KEYS[i], refill)\n"
	"      if u > 0 then save(KEYS[i], math.max(0, u - cost * tu), at, refill) end\n"
	"    end\n"
	"  end\n"
	"  for j = 1, nw do\n"
	"    local key, period = KEYS[nb + j], tonumber(ARGV[wa + 2 * (j - 1)])\n"
	"    local f = int(math.floor(tonumber(ARGV[wa + 2 * (j - 1) + 1]) / slots(period)))\n"
	"    local c = tonumber(redis.call('HGET', key, f))\n"
	"    if c and c > 1 then redis.call('HINCRBY', key, f, -1)\n"
	"    elseif c then redis.call('HDEL', key, f) end\n"
	"  end\n"
	"  remember({now})\n"
	"  return now\n"
	"elseif op == 'peek' then\n"
	"  local res = {}\n"
	"  for i = 1, nb do\n"
	"    local _, tu, refill = bucket(i)\n"
	"    if tu == 0 then\n"
	"      local s, e = cal(i, now)\n"
	"      if not s then return redis.error_reply(skew) end\n"
	"      res[2 * i - 1] = calused(KEYS[i], s)\n"
	"      res[2 * i] = e - now\n"
	"    else\n"
	"      local u, at = level(KEYS[i], refill)\n"
	"      res[2 * i - 1] = u\n"
	"      res[2 * i] = u > 0 and (at - now + ceildiv(u, refill)) or 0\n"
	"    end\n"
	"  end\n"
	"  res[2 * nb + 1] = now\n"
	"  return res\n"
	"end\n"
	"return redis.error_reply('bulkmilter script: unknown op')\n";

const size_t store_redis_script_len = sizeof(store_redis_script) - 1;
