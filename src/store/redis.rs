//! The Redis backend: one multiplexed connection (`redis::aio::ConnectionManager`, which
//! reconnects by itself) shared by every request of the process.
//!
//! Every operation is bounded by [`OP_TIMEOUT`], so an unreachable Redis turns into a prompt
//! [`StoreError`] (and sends fail closed) rather than a hung call. The connection is made
//! lazily: the service starts, and serves reads, while Redis is still down.

use std::time::Duration;

use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{Key, Put, Store, StoreError, WindowCount};

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

/// Shared state in Redis.
pub struct RedisStore {
    connection: ConnectionManager,
    increment: Script,
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[tonic::async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(key.as_str())).await
    }

    async fn put(
        &self,
        key: &Key,
        value: &[u8],
        ttl: Duration,
        mode: Put,
    ) -> Result<bool, StoreError> {
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
        self.query::<i64>(redis::cmd("DEL").arg(key.as_str()))
            .await
            .map(drop)
    }

    async fn increment(&self, key: &Key, window: Duration) -> Result<WindowCount, StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.increment.key(key.as_str());
        invocation.arg(millis(window));
        let (count, ttl_ms): (u64, u64) = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_ms),
        })
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
