//! The Redis backend: one multiplexed connection (`redis::aio::ConnectionManager`, which
//! reconnects by itself) shared by every request of the process.
//!
//! Every operation is bounded by [`OP_TIMEOUT`], so an unreachable Redis turns into a prompt
//! [`StoreError`] (and sends fail closed) rather than a hung call. The connection is made
//! lazily: the service starts, and serves reads, while Redis is still down.
//!
//! A [`Batch`] is one Lua script ([`BATCH`], `EVALSHA`), and a settlement's [`Write`]s one
//! `MULTI`/`EXEC` pipeline: a send costs two round trips. All keys of a batch are passed as
//! `KEYS`, as scripts must; they are not hash-tagged, so Redis Cluster is not supported (one
//! primary, optionally with replicas, is).

use std::time::Duration;

use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{
    Key, Put, Store, StoreError, WindowCount,
    batch::{Batch, Op, Replies, Reply, Write},
};
use crate::telemetry::metrics;

/// The `backend` label of this store's round trips.
const BACKEND: &str = "redis";

/// The longest one store operation may take, reconnecting included.
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// `INCR` + a window that starts with the first increment, in one atomic step. Returns the count
/// and the milliseconds until the window ends. A key left without expiry (never by us) is given
/// one, so a counter can never grow forever.
const INCREMENT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// A [`Batch`], run in one step. `ARGV[1]` is the index in `KEYS` of the claim to release when
/// a limit refuses (0: none); then each operation is a code and its arguments, its keys taken
/// from `KEYS` in order:
/// - `c value ttl_ms`: claim (`SET NX`); a live value stops the batch;
/// - `n window_ms limit`: fixed-window counter (as [`INCREMENT`]); past `limit` (> 0) refuses;
/// - `s ttl_ms part whole limit enforce` (two keys): sliding window, this bucket counted (its
///   expiry set by its first increment; bucket keys are this script's alone, so no `PTTL`
///   repair), the previous one read and weighted `part / whole` rounded up (exact while
///   count × part stays below 2^53); past `limit` stops, and refuses when `enforce` is 1;
/// - `r stop`: read; a value stops the batch when `stop` is 1;
/// - `d`: delete;
/// - `x`: refuse (a rule decided without the store).
///
/// Returns `{stopped, {reply, …}}`, one reply per operation run: `{'c'}` claimed, `{'t', value}`
/// taken, `{'n', count, ttl_ms}`, `{'s', current, previous}`, `{'r'[, value]}`, `{'d'}`, `{'x'}`.
const BATCH: &str = r"
local release = tonumber(ARGV[1])
local k, a = 1, 2
local out = {}
local function count(key, window)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = tonumber(window)
  end
  return n, ttl
end
local function bump(key, window)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  return n
end
local function weighted(n, part, whole)
  local w = math.floor(n * part / whole)
  if w * whole < n * part then w = w + 1 end
  return w
end
while a <= #ARGV do
  local op = ARGV[a]
  local stop = 0
  if op == 'c' then
    local key = KEYS[k]
    k = k + 1
    if redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2], 'NX') then
      out[#out + 1] = {'c'}
    else
      out[#out + 1] = {'t', redis.call('GET', key)}
      stop = 1
    end
    a = a + 3
  elseif op == 'n' then
    local n, ttl = count(KEYS[k], ARGV[a + 1])
    k = k + 1
    out[#out + 1] = {'n', n, ttl}
    local limit = tonumber(ARGV[a + 2])
    if limit > 0 and n > limit then stop = 2 end
    a = a + 3
  elseif op == 's' then
    local current = bump(KEYS[k], ARGV[a + 1])
    local previous = tonumber(redis.call('GET', KEYS[k + 1]) or '0') or 0
    k = k + 2
    out[#out + 1] = {'s', current, previous}
    local sum = current + weighted(previous, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
    if sum > tonumber(ARGV[a + 4]) then
      if ARGV[a + 5] == '1' then stop = 2 else stop = 1 end
    end
    a = a + 6
  elseif op == 'r' then
    local value = redis.call('GET', KEYS[k])
    k = k + 1
    if value then
      out[#out + 1] = {'r', value}
      if ARGV[a + 1] == '1' then stop = 1 end
    else
      out[#out + 1] = {'r'}
    end
    a = a + 2
  elseif op == 'd' then
    redis.call('DEL', KEYS[k])
    k = k + 1
    out[#out + 1] = {'d'}
    a = a + 1
  elseif op == 'x' then
    out[#out + 1] = {'x'}
    stop = 2
    a = a + 1
  else
    return redis.error_reply('unknown batch operation')
  end
  if stop > 0 then
    if stop == 2 and release > 0 then redis.call('DEL', KEYS[release]) end
    return {1, out}
  end
end
return {0, out}
";

/// Shared state in Redis.
pub struct RedisStore {
    connection: ConnectionManager,
    increment: Script,
    batch: Script,
    /// `host:port` only: the URL may carry a password.
    address: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Checks a `REDIS_URL` without connecting; the error never repeats the URL (it may hold a
/// password).
pub fn check_url(url: &str) -> Result<(), String> {
    Client::open(url).map(drop).map_err(|e| {
        format!(
            "REDIS_URL is not a valid redis:// or rediss:// URL ({:?})",
            e.kind()
        )
    })
}

impl RedisStore {
    /// A store on the Redis at `url`, connecting on first use. Must run inside a Tokio runtime.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let address = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(OP_TIMEOUT);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        tracing::info!(redis = %address, "shared state in Redis");
        Ok(Self {
            connection,
            increment: Script::new(INCREMENT),
            batch: Script::new(BATCH),
            address,
        })
    }

    /// Runs one command with the operation timeout.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        bounded(command.query_async(&mut connection)).await
    }
}

async fn bounded<T>(
    operation: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, operation).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(StoreError(format!(
            "no answer within {} ms",
            OP_TIMEOUT.as_millis()
        ))),
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError(error.to_string())
}

/// The `KEYS` and `ARGV` of [`BATCH`] for `batch`.
fn batch_invocation<'a>(script: &'a Script, batch: &Batch) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    let mut keys = 0_usize;
    let mut key = |invocation: &mut redis::ScriptInvocation<'a>, key: &Key| {
        invocation.key(key.as_str());
        keys += 1;
    };
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(1 + batch.ops.len() * 4);
    args.push(Vec::new()); // the release index, set below
    let flag = |on: bool| if on { b"1".to_vec() } else { b"0".to_vec() };
    let text = |n: u64| n.to_string().into_bytes();
    for op in &batch.ops {
        match op {
            Op::Claim { key: k, value, ttl } => {
                key(&mut invocation, k);
                args.extend([b"c".to_vec(), value.clone(), text(millis(*ttl))]);
            }
            Op::Count {
                key: k,
                window,
                limit,
            } => {
                key(&mut invocation, k);
                args.extend([
                    b"n".to_vec(),
                    text(millis(*window)),
                    text(limit.unwrap_or(0)),
                ]);
            }
            Op::Slide {
                current,
                previous,
                ttl,
                weight: (part, whole),
                limit,
                enforce,
            } => {
                key(&mut invocation, current);
                key(&mut invocation, previous);
                args.extend([
                    b"s".to_vec(),
                    text(millis(*ttl)),
                    text(*part),
                    text((*whole).max(1)),
                    text(*limit),
                    flag(*enforce),
                ]);
            }
            Op::Read {
                key: k,
                stop_if_found,
            } => {
                key(&mut invocation, k);
                args.extend([b"r".to_vec(), flag(*stop_if_found)]);
            }
            Op::Delete { key: k } => {
                key(&mut invocation, k);
                args.push(b"d".to_vec());
            }
            Op::Refuse => args.push(b"x".to_vec()),
        }
    }
    args[0] = match &batch.release {
        Some(release) => {
            key(&mut invocation, release);
            text(keys as u64)
        }
        None => b"0".to_vec(),
    };
    for arg in args {
        invocation.arg(arg);
    }
    invocation
}

/// Reads [`BATCH`]'s answer.
fn batch_replies(value: redis::Value) -> Result<Replies, StoreError> {
    use redis::Value as V;
    let malformed = || StoreError("malformed batch reply".into());
    let V::Array(mut top) = value else {
        return Err(malformed());
    };
    let (Some(V::Array(items)), Some(V::Int(stopped))) = (top.pop(), top.pop()) else {
        return Err(malformed());
    };
    let number = |value: &V| match value {
        V::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    let replies = items
        .into_iter()
        .map(|item| {
            let V::Array(fields) = item else {
                return None;
            };
            let mut fields = fields.into_iter();
            let Some(V::BulkString(tag)) = fields.next() else {
                return None;
            };
            let rest: Vec<V> = fields.collect();
            Some(match (tag.as_slice(), rest.as_slice()) {
                (b"c", []) => Reply::Claimed,
                (b"t", [V::BulkString(value)]) => Reply::Taken(value.clone()),
                (b"n", [count, ttl]) => Reply::Counted(WindowCount {
                    count: number(count)?,
                    resets_in: Duration::from_millis(number(ttl)?),
                }),
                (b"s", [current, previous]) => Reply::Slid {
                    current: number(current)?,
                    previous: number(previous)?,
                },
                (b"r", []) => Reply::Read(None),
                (b"r", [V::BulkString(value)]) => Reply::Read(Some(value.clone())),
                (b"d", []) => Reply::Deleted,
                (b"x", []) => Reply::Refused,
                _ => return None,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(malformed)?;
    Ok(Replies {
        replies,
        stopped: stopped == 1,
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[tonic::async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        metrics::store_round_trip(BACKEND, "get");
        self.query(redis::cmd("GET").arg(key.as_str())).await
    }

    async fn put(
        &self,
        key: &Key,
        value: &[u8],
        ttl: Duration,
        mode: Put,
    ) -> Result<bool, StoreError> {
        metrics::store_round_trip(BACKEND, "put");
        let mut command = redis::cmd("SET");
        command
            .arg(key.as_str())
            .arg(value)
            .arg("PX")
            .arg(millis(ttl));
        if mode == Put::IfAbsent {
            command.arg("NX");
        }
        // `SET` answers OK when it wrote and nil when NX found a value.
        let written: Option<String> = self.query(&command).await?;
        Ok(written.is_some())
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        metrics::store_round_trip(BACKEND, "delete");
        self.query::<i64>(redis::cmd("DEL").arg(key.as_str()))
            .await
            .map(drop)
    }

    async fn increment(&self, key: &Key, window: Duration) -> Result<WindowCount, StoreError> {
        metrics::store_round_trip(BACKEND, "increment");
        let mut connection = self.connection.clone();
        let mut invocation = self.increment.key(key.as_str());
        invocation.arg(millis(window));
        let (count, ttl_ms): (u64, u64) = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_ms),
        })
    }

    async fn run(&self, batch: &Batch) -> Result<Replies, StoreError> {
        metrics::store_round_trip(BACKEND, "batch");
        let mut connection = self.connection.clone();
        let invocation = batch_invocation(&self.batch, batch);
        batch_replies(bounded(invocation.invoke_async(&mut connection)).await?)
    }

    async fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
        metrics::store_round_trip(BACKEND, "write");
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for write in writes {
            match write {
                Write::Put { key, value, ttl } => pipeline
                    .cmd("SET")
                    .arg(key.as_str())
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(millis(*ttl))
                    .ignore(),
                Write::Delete { key } => pipeline.cmd("DEL").arg(key.as_str()).ignore(),
            };
        }
        let mut connection = self.connection.clone();
        bounded(pipeline.query_async::<()>(&mut connection)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_names_the_address_but_never_the_credentials() {
        // The connection is lazy: nothing listens there, and nothing needs to.
        let store = RedisStore::connect("redis://user:s3cret@127.0.0.1:6390/2").expect("a URL");
        assert_eq!(
            format!("{store:?}"),
            r#"RedisStore { address: "127.0.0.1:6390", .. }"#
        );
    }
}
