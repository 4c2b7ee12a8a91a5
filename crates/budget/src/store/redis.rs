//! [`RedisStore`]: limits shared by every replica, one Lua script per step.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio::sync::Notify;

use super::{
    BoxFuture, Entry, EntryState, LimitStore, Reservation, Reserve, Rule, ScopeKey, Standing,
    StoreError, StoreErrorKind, Verdict, Window, budget_standing, rate_refusal, rate_standing,
};

const MICROS: u64 = 1_000_000;

/// Checks every charge, then takes every charge: all or none, in one script.
///
/// Per charge, ARGV holds six fields: kind (1 calendar or lifetime budget, 2 rolling
/// budget, 3 rate), amount, limit (-1: none; a rate's value), then p1..p3: budget 1:
/// expire-at ms (0: never); budget 2: current bucket, bucket count, TTL ms; rate: the
/// period in microseconds. KEYS hold two keys per charge: the limit's hash and its lease
/// set. The reply is text (a rate's level is fractional): `1, 0, a1, r1, a2, r2…` when
/// admitted, `0, index, a, r` when refused; `a` is a budget's spend or a rate's level,
/// `r` a budget's reservations.
const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local id = ARGV[2]
local lease_until = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local function f(x) return string.format('%.17g', x) end
local seen = {}
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local amount = tonumber(ARGV[b + 2])
  local limit = tonumber(ARGV[b + 3])
  local key = KEYS[2 * i - 1]
  local a, r = 0, 0
  if kind == 3 then
    a = tonumber(redis.call('HGET', key, 'l') or '0')
    local at = tonumber(redis.call('HGET', key, 'a') or '0')
    if now > at then
      a = math.max(0, a - (now - at) * limit / tonumber(ARGV[b + 4]))
    end
    if limit == 0 or a + amount > limit + 1e-9 then
      return {'0', f(i - 1), f(a), '0'}
    end
  else
    local leases = KEYS[2 * i]
    local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 64)
    for _, d in ipairs(dead) do
      local held = redis.call('HGET', key, 'r:' .. d)
      if held then
        redis.call('HINCRBY', key, 'res', -tonumber(held))
        redis.call('HDEL', key, 'r:' .. d)
      end
      redis.call('ZREM', leases, d)
    end
    r = tonumber(redis.call('HGET', key, 'res') or '0')
    if kind == 1 then
      a = tonumber(redis.call('HGET', key, 'used') or '0')
    else
      local cur = tonumber(ARGV[b + 4])
      local fields = {}
      for k = cur - tonumber(ARGV[b + 5]) + 1, cur do
        fields[#fields + 1] = 'b:' .. k
      end
      for _, v in ipairs(redis.call('HMGET', key, unpack(fields))) do
        if v then a = a + tonumber(v) end
      end
    end
    if limit >= 0 and a + r + amount > limit then
      return {'0', f(i - 1), f(a), f(r)}
    end
  end
  seen[2 * i - 1] = a
  seen[2 * i] = r
end
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local key = KEYS[2 * i - 1]
  if kind == 3 then
    local level = seen[2 * i - 1] + tonumber(ARGV[b + 2])
    local at = math.max(tonumber(redis.call('HGET', key, 'a') or '0'), now)
    redis.call('HSET', key, 'l', f(level), 'a', f(at))
    local empty = level * tonumber(ARGV[b + 4]) / tonumber(ARGV[b + 3])
    redis.call('PEXPIRE', key, math.ceil(empty / 1000) + 1000)
  else
    local leases = KEYS[2 * i]
    redis.call('HINCRBY', key, 'res', ARGV[b + 2])
    redis.call('HSET', key, 'r:' .. id, ARGV[b + 2])
    redis.call('ZADD', leases, lease_until, id)
    if kind == 1 then
      local at = tonumber(ARGV[b + 4])
      if at > 0 then
        redis.call('PEXPIREAT', key, at)
        redis.call('PEXPIREAT', leases, at)
      end
    else
      redis.call('PEXPIRE', key, ARGV[b + 6])
      redis.call('PEXPIRE', leases, ARGV[b + 6])
    end
  end
end
local out = {'1', '0'}
for i = 1, #seen do out[#out + 1] = f(seen[i]) end
return out
";

/// Gives a reservation back (once: only if its lease is still there) and charges the
/// actual amounts. Per charge, ARGV holds five fields: kind, amount reserved, actual, then
/// budget 1: expire-at ms; budget 2: the bucket, TTL ms; rate: unused (the level moves by
/// actual - amount).
const SETTLE: &str = r"
local id = ARGV[1]
local n = tonumber(ARGV[2])
for i = 1, n do
  local b = 2 + (i - 1) * 5
  local kind = tonumber(ARGV[b + 1])
  local key = KEYS[2 * i - 1]
  if kind == 3 then
    local level = redis.call('HGET', key, 'l')
    if level then
      local next = math.max(tonumber(level) + tonumber(ARGV[b + 3]) - tonumber(ARGV[b + 2]), 0)
      redis.call('HSET', key, 'l', string.format('%.17g', next))
    end
  else
    local leases = KEYS[2 * i]
    if redis.call('HDEL', key, 'r:' .. id) == 1 then
      redis.call('HINCRBY', key, 'res', -tonumber(ARGV[b + 2]))
    end
    redis.call('ZREM', leases, id)
    if kind == 1 then
      redis.call('HINCRBY', key, 'used', ARGV[b + 3])
      local at = tonumber(ARGV[b + 4])
      if at > 0 then redis.call('PEXPIREAT', key, at) end
    else
      redis.call('HINCRBY', key, 'b:' .. ARGV[b + 4], ARGV[b + 3])
      redis.call('PEXPIRE', key, ARGV[b + 5])
    end
  end
end
return 1
";

/// The default deadline of one Redis call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);

/// Builds a [`RedisStore`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    deadline: Duration,
}

impl RedisStoreBuilder {
    /// Prefixes every key (default `portcullis:limits`). It is wrapped in braces, a Redis
    /// Cluster hash tag, so all keys of the store live on one node and a script may touch
    /// several.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a reserve or settle may take (default [`DEFAULT_DEADLINE`]); past it
    /// the call fails and the layer's failure policy answers.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The store. It connects lazily, so a Redis that is down at start-up is a failure of
    /// the first calls (handled by the failure policy), not of the build.
    ///
    /// # Errors
    /// A URL that does not parse.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let unavailable =
            |e: redis::RedisError| StoreError::new(StoreErrorKind::Unavailable, e.to_string());
        let client = Client::open(self.url.as_str()).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.deadline))
            .set_response_timeout(Some(self.deadline))
            // Fail fast while Redis is away; the next call tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(5))
            .set_max_delay(Duration::from_millis(50));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            prefix: format!("{{{}}}", self.prefix).into(),
            deadline: self.deadline,
            reserve: Arc::new(Script::new(RESERVE)),
            settle: Arc::new(Script::new(SETTLE)),
            pending: Arc::new((AtomicUsize::new(0), Notify::new())),
            handle: tokio::runtime::Handle::current(),
            settle_errors: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Limits in Redis, shared by every gateway replica that points at it.
///
/// - **Atomic.** A reservation is one `EVALSHA` of a Lua script that checks every charge and
///   takes them all or none; a settlement is one more. Nothing reads a counter in one call
///   and writes it in another.
/// - **Leases.** Each budget reservation is a field `r:<id>` of its limit's hash and a member
///   of the limit's lease set, scored with its expiry. Every reservation in that scope first
///   gives back the expired leases of a process that crashed before settling, so a crash
///   holds budget for at most the lease (the layer's `lease`, default 15 minutes). A settle
///   gives its lease back only if it is still there, so nothing is given back twice.
/// - **Windows in the keys.** A calendar budget's key names its window's start and expires
///   at the window's end plus the lease: a reset needs no job. Rolling budgets keep one
///   field per bucket; rates keep the GCRA time in a key that expires when the bucket is full.
/// - **Deadlines.** Every call has a deadline (default 100 ms); a failure or a late answer is
///   a [`StoreError`] and the layer's failure policy decides. Settlements run in the
///   background; one that fails leaves its reservation to its lease, and is counted.
/// - **Clocks.** Times come from the layer's clock, so replicas should keep their clocks in
///   step (NTP): a replica ahead by a second sees rate buckets refill a second early.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    deadline: Duration,
    reserve: Arc<Script>,
    settle: Arc<Script>,
    pending: Arc<(AtomicUsize, Notify)>,
    handle: tokio::runtime::Handle,
    settle_errors: Arc<AtomicUsize>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("deadline", &self.deadline)
            .field("pending_settles", &self.pending.0.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Escapes the characters that delimit key parts.
fn escape(part: &str, out: &mut String) {
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '*' => out.push_str("%2A"),
            c => out.push(c),
        }
    }
}

fn unescape(part: &str) -> String {
    part.replace("%3A", ":")
        .replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%2A", "*")
        .replace("%25", "%")
}

fn ms_ceil(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "portcullis:limits".to_owned(),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Settlements sent but not yet answered.
    pub fn pending_settles(&self) -> usize {
        self.pending.0.load(Ordering::Acquire)
    }

    /// Settlements that failed (their reservations wait for their leases).
    pub fn settle_errors(&self) -> usize {
        self.settle_errors.load(Ordering::Relaxed)
    }

    /// Waits until every settlement sent so far has been answered (or failed).
    pub async fn flush(&self) {
        loop {
            let notified = self.pending.1.notified();
            if self.pending_settles() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Sends a `PING`, within the deadline.
    ///
    /// # Errors
    /// Redis is down or slow.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let call = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        within(self.deadline, call).await.map(drop)
    }

    fn key(&self, key: &ScopeKey, rule: &Rule) -> String {
        let mut out =
            String::with_capacity(self.prefix.len() + key.policy.len() + key.scope.len() + 24);
        out.push_str(&self.prefix);
        out.push(':');
        escape(&key.policy, &mut out);
        out.push(':');
        out.push_str(&key.limit.to_string());
        out.push(':');
        escape(&key.scope, &mut out);
        match rule {
            Rule::Budget {
                window: Window::Calendar { start, .. },
                ..
            } => {
                out.push_str(":c");
                out.push_str(&start.to_string());
            }
            Rule::Budget {
                window: Window::Never,
                ..
            } => out.push_str(":n"),
            Rule::Budget { .. } => out.push_str(":r"),
            Rule::Rate { .. } => out.push_str(":g"),
        }
        out
    }

    fn parse_key(&self, key: &str) -> Option<(ScopeKey, char, u64)> {
        let rest = key.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        let mut parts = rest.split(':');
        let policy = unescape(parts.next()?);
        let limit = parts.next()?.parse().ok()?;
        let scope = unescape(parts.next()?);
        let suffix = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let kind = suffix.chars().next()?;
        let window = suffix[1..].parse().unwrap_or(0);
        Some((ScopeKey::new(policy, limit, scope), kind, window))
    }

    /// The keys and arguments of a reservation's two scripts.
    fn reserve_args(&self, reservation: &Reservation) -> (Vec<String>, Vec<i64>) {
        let now = reservation.now_micros;
        let mut keys = Vec::with_capacity(reservation.charges.len() * 2);
        let lease = u64::try_from(reservation.lease.as_micros()).unwrap_or(u64::MAX / 4);
        let mut args: Vec<i64> = vec![
            to_i64(now),
            lease_id(reservation),
            to_i64(now.saturating_add(lease)),
            reservation.charges.len() as i64,
        ];
        let lease_ms = lease / 1000;
        for charge in &reservation.charges {
            let key = self.key(&charge.key, &charge.rule);
            keys.push(format!("{key}:l"));
            keys.insert(keys.len() - 1, key);
            match charge.rule {
                Rule::Budget { limit, window, .. } => {
                    let limit = limit.map_or(-1, to_i64);
                    match window {
                        Window::Calendar { end, .. } => args.extend([
                            1,
                            to_i64(charge.amount),
                            limit,
                            to_i64(ms_ceil(end).saturating_add(lease_ms)),
                            0,
                            0,
                        ]),
                        Window::Never => args.extend([1, to_i64(charge.amount), limit, 0, 0, 0]),
                        Window::Rolling {
                            bucket,
                            buckets,
                            bucket_secs,
                        } => args.extend([
                            2,
                            to_i64(charge.amount),
                            limit,
                            to_i64(bucket),
                            i64::from(buckets),
                            to_i64(
                                ms_ceil(u64::from(buckets) * bucket_secs).saturating_add(lease_ms),
                            ),
                        ]),
                    }
                }
                Rule::Rate { value, period_secs } => args.extend([
                    3,
                    to_i64(charge.amount),
                    to_i64(value),
                    to_i64(period_secs * MICROS),
                    0,
                    0,
                ]),
            }
        }
        (keys, args)
    }

    fn settle_args(&self, reservation: &Reservation, actual: &[u64]) -> (Vec<String>, Vec<i64>) {
        let mut keys = Vec::with_capacity(reservation.charges.len() * 2);
        let lease_ms = u64::try_from(reservation.lease.as_millis()).unwrap_or(u64::MAX / 4);
        let mut args: Vec<i64> = vec![lease_id(reservation), reservation.charges.len() as i64];
        for (charge, &actual) in reservation.charges.iter().zip(actual) {
            let key = self.key(&charge.key, &charge.rule);
            keys.push(format!("{key}:l"));
            keys.insert(keys.len() - 1, key);
            let (amount, spent) = (to_i64(charge.amount), to_i64(actual));
            match charge.rule {
                Rule::Budget { window, .. } => match window {
                    Window::Calendar { end, .. } => args.extend([
                        1,
                        amount,
                        spent,
                        to_i64(ms_ceil(end).saturating_add(lease_ms)),
                        0,
                    ]),
                    Window::Never => args.extend([1, amount, spent, 0, 0]),
                    Window::Rolling {
                        bucket,
                        buckets,
                        bucket_secs,
                    } => args.extend([
                        2,
                        amount,
                        spent,
                        to_i64(bucket),
                        to_i64(ms_ceil(u64::from(buckets) * bucket_secs).saturating_add(lease_ms)),
                    ]),
                },
                Rule::Rate { .. } => args.extend([3, amount, spent, 0, 0]),
            }
        }
        (keys, args)
    }
}

/// The lease's name in Redis (sent as text, so any 63 bits do).
fn lease_id(reservation: &Reservation) -> i64 {
    (reservation.id & (u64::MAX >> 1)) as i64
}

/// Lua numbers are doubles: every value sent stays below 2^53.
fn to_i64(v: u64) -> i64 {
    v.min(1 << 53) as i64
}

async fn within<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::new(StoreErrorKind::Unavailable, e.to_string())),
        Err(_) => Err(StoreError::new(
            StoreErrorKind::Timeout,
            format!("no answer within {} ms", deadline.as_millis()),
        )),
    }
}

/// Reads the reserve script's answer into a verdict.
fn verdict(reservation: &Reservation, reply: &[String]) -> Result<Verdict, StoreError> {
    let bad = || StoreError::new(StoreErrorKind::Unavailable, "unexpected script reply");
    let now = reservation.now_micros;
    let numbers = reply
        .iter()
        .map(|s| s.parse::<f64>().map_err(|_| bad()))
        .collect::<Result<Vec<f64>, _>>()?;
    let whole = |x: f64| x.max(0.0).round() as u64;
    let standing = |index: usize, a: f64, r: f64, taken: bool| -> Option<Standing> {
        let charge = reservation.charges.get(index)?;
        Some(match charge.rule {
            Rule::Budget {
                limit,
                alert,
                window,
            } => {
                let (a, r) = (whole(a), whole(r));
                let reserved = if taken {
                    r.saturating_add(charge.amount)
                } else {
                    r
                };
                budget_standing(limit, alert, &window, a, a.saturating_add(r), reserved, now)
            }
            Rule::Rate { value, period_secs } if taken => {
                rate_standing(value, period_secs, a + charge.amount as f64)
            }
            Rule::Rate { value, period_secs } => rate_refusal(value, period_secs, a, charge.amount),
        })
    };
    match numbers.as_slice() {
        [ok, _, rest @ ..] if *ok == 1.0 && rest.len() == reservation.charges.len() * 2 => rest
            .chunks(2)
            .enumerate()
            .map(|(i, c)| standing(i, c[0], c[1], true).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Verdict::Admitted),
        [ok, index, a, r] if *ok == 0.0 => {
            let index = whole(*index) as usize;
            let standing = standing(index, *a, *r, false).ok_or_else(bad)?;
            Ok(Verdict::Refused { index, standing })
        }
        _ => Err(bad()),
    }
}

impl LimitStore for RedisStore {
    type Future = BoxFuture<'static, Result<Verdict, StoreError>>;

    fn reserve(&self, reservation: &Arc<Reservation>) -> Reserve<Self::Future> {
        let (keys, args) = self.reserve_args(reservation);
        let (script, mut conn, deadline) = (self.reserve.clone(), self.conn.clone(), self.deadline);
        let reservation = reservation.clone();
        Reserve::Pending(Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(*arg);
            }
            let reply: Vec<String> = within(deadline, invocation.invoke_async(&mut conn)).await?;
            verdict(&reservation, &reply)
        }))
    }

    fn settle(&self, reservation: &Arc<Reservation>, actual: &[u64]) {
        let (keys, args) = self.settle_args(reservation, actual);
        let (script, mut conn, deadline) = (self.settle.clone(), self.conn.clone(), self.deadline);
        let (pending, errors) = (self.pending.clone(), self.settle_errors.clone());
        pending.0.fetch_add(1, Ordering::AcqRel);
        let task = async move {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(*arg);
            }
            let result: Result<i64, _> = within(deadline, invocation.invoke_async(&mut conn)).await;
            if let Err(e) = result {
                errors.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("portcullis_budget_store_errors_total", "op" => "settle")
                    .increment(1);
                tracing::warn!(error = %e, "budget settlement failed; the reservation is held until its lease expires");
            }
            if pending.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                pending.1.notify_waiters();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn(task)),
            Err(_) => drop(self.handle.spawn(task)),
        }
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let pattern = format!("{}:*", self.prefix);
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = within(
                    self.deadline,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await?;
                keys.extend(batch.into_iter().filter(|k| !k.ends_with(":l")));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let mut entries = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.hgetall(key);
                }
                let maps: Vec<std::collections::HashMap<String, String>> =
                    within(self.deadline, pipe.query_async(&mut conn)).await?;
                for (key, map) in chunk.iter().zip(maps) {
                    let Some((key, kind, window)) = self.parse_key(key) else {
                        continue;
                    };
                    let num = |field: &str| {
                        map.get(field)
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or(0.0)
                    };
                    let reserved = num("res").max(0.0) as u64;
                    let state = match kind {
                        'c' | 'n' => EntryState::Budget {
                            window,
                            used: num("used").max(0.0) as u64,
                            reserved,
                        },
                        'r' => EntryState::Rolling {
                            buckets: map
                                .iter()
                                .filter_map(|(f, v)| {
                                    Some((f.strip_prefix("b:")?.parse().ok()?, v.parse().ok()?))
                                })
                                .collect(),
                            reserved,
                        },
                        'g' => EntryState::Rate {
                            level: num("l"),
                            at: num("a") as u64,
                        },
                        _ => continue,
                    };
                    entries.push(Entry { key, state });
                }
            }
            Ok(entries)
        })
    }

    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_escapes() {
        for part in ["plain", "a:b", "{x}", "100%", "k=v,m=*"] {
            let mut out = String::new();
            escape(part, &mut out);
            assert!(!out.contains(':') && !out.contains('{') && !out.contains('*'));
            assert_eq!(unescape(&out), part);
        }
    }
}
