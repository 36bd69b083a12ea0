//! The ITNIO accounts the service calls, by name, and the upstream client for each request.
//!
//! The account configured from the environment (or the in-process sandbox) is `default`; the
//! callers file adds more (`[[accounts]]`: brands, regions, cost centres). Each caller is routed
//! to its account: services call [`Accounts::client_for`] with the request, which reads the
//! [`Caller`] the auth layer attached. A reload of the callers file swaps the set of accounts
//! as a whole.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tonic::Request;

use crate::{
    caller::{Caller, DEFAULT_ACCOUNT},
    reload::Swap,
    secret::Secret,
    upstream::{BuildError, ConcurrencyLimit, UpstreamClient, UpstreamConfig, client::HttpVersion},
};

/// One `[[accounts]]` entry of the callers file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// How callers name it (`account = "…"`); also in logs.
    pub name: String,
    /// Its API base URL.
    pub base_url: String,
    /// Its API key.
    pub api_key: String,
    /// Its API secret, read from `api_secret_file`.
    pub api_secret: Secret,
}

/// A caller's account is not (or no longer) configured: a reload removed it between the
/// authentication of this call and its routing.
#[derive(Debug, thiserror::Error)]
#[error("the caller's ITNIO account is not configured")]
pub struct UnknownAccount {
    /// The account's name (from the callers file, safe to show).
    pub account: String,
}

/// Every configured account's upstream client, by name. Clones share the same set.
#[derive(Clone)]
pub struct Accounts {
    clients: Arc<Swap<HashMap<String, UpstreamClient>>>,
    /// Settings every account's client shares with the `default` one.
    timeout: Duration,
    max_response_bytes: usize,
    http_version: HttpVersion,
    /// One cap on calls in flight for all accounts together.
    in_flight: ConcurrencyLimit,
}

impl Accounts {
    /// Only the `default` account, calling through `default`.
    pub fn new(default: UpstreamClient) -> Self {
        let timeout = default.config().timeout;
        let max_response_bytes = default.max_response_bytes();
        let http_version = default.http_version();
        let in_flight = default.concurrency_limit().clone();
        let clients = HashMap::from([(DEFAULT_ACCOUNT.to_owned(), default)]);
        Self {
            clients: Arc::new(Swap::new(clients)),
            timeout,
            max_response_bytes,
            http_version,
            in_flight,
        }
    }

    /// The client of the account named `name`.
    pub fn client(&self, name: &str) -> Result<UpstreamClient, UnknownAccount> {
        self.clients
            .get()
            .get(name)
            .cloned()
            .ok_or_else(|| UnknownAccount {
                account: name.to_owned(),
            })
    }

    /// The client of the account the request's caller is routed to.
    pub fn client_for<T>(&self, request: &Request<T>) -> Result<UpstreamClient, UnknownAccount> {
        self.client(Caller::of(request).account())
    }

    /// Puts `default` plus `accounts` in use (the `default` client stays the same).
    pub fn replace(&self, accounts: &[AccountSpec]) -> Result<(), BuildError> {
        let mut next = HashMap::with_capacity(accounts.len() + 1);
        if let Some(default) = self.clients.get().get(DEFAULT_ACCOUNT) {
            next.insert(DEFAULT_ACCOUNT.to_owned(), default.clone());
        }
        for spec in accounts {
            let client = UpstreamClient::new_with_http_version(
                UpstreamConfig {
                    base_url: spec.base_url.clone(),
                    api_key: spec.api_key.clone(),
                    api_secret: spec.api_secret.expose().to_owned(),
                    timeout: self.timeout,
                },
                self.http_version,
            )?
            .with_max_response_bytes(self.max_response_bytes)
            .with_concurrency_limit(self.in_flight.clone());
            next.insert(spec.name.clone(), client);
        }
        self.clients.set(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str, version: HttpVersion) -> UpstreamClient {
        UpstreamClient::new_with_http_version(
            UpstreamConfig {
                base_url: base_url.into(),
                api_key: "k".into(),
                api_secret: "s".into(),
                timeout: Duration::from_secs(1),
            },
            version,
        )
        .expect("client")
    }

    fn spec(name: &str, base_url: &str, secret: &str) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            base_url: base_url.into(),
            api_key: format!("{name}-key"),
            api_secret: Secret::new(secret),
        }
    }

    #[test]
    fn requests_are_routed_to_their_callers_account() {
        let accounts = Accounts::new(
            client("http://default.test", HttpVersion::Http2).with_max_response_bytes(1234),
        );
        accounts
            .replace(&[spec("brand-b", "http://b.test", "s")])
            .expect("replace");
        let mut request = Request::new(());
        assert_eq!(
            accounts
                .client_for(&request)
                .expect("default")
                .config()
                .base_url,
            "http://default.test"
        );
        request
            .extensions_mut()
            .insert(Caller::new("checkout", "brand-b"));
        let routed = accounts.client_for(&request).expect("brand-b");
        assert_eq!(routed.config().base_url, "http://b.test");
        assert_eq!(routed.config().api_key, "brand-b-key");
        assert_eq!(routed.config().timeout, Duration::from_secs(1));
        assert_eq!(routed.max_response_bytes(), 1234);
        assert_eq!(routed.http_version(), HttpVersion::Http2);
        let Err(missing) = accounts.client("brand-c") else {
            panic!("brand-c is not configured");
        };
        assert_eq!(missing.account, "brand-c");
    }

    #[test]
    fn a_replace_swaps_the_whole_set_but_keeps_the_default() {
        let accounts = Accounts::new(client("http://default.test", HttpVersion::Http1));
        accounts
            .replace(&[
                spec("a", "http://a.test", "s"),
                spec("b", "http://b.test", "s"),
            ])
            .expect("replace");
        accounts
            .replace(&[
                spec("a", "http://a.test", "s"),
                spec("b", "http://b.test", "new"),
            ])
            .expect("replace");
        assert_eq!(accounts.client("b").expect("b").config().api_secret, "new");
        accounts.replace(&[]).expect("replace");
        assert!(accounts.client("a").is_err());
        assert!(accounts.client(DEFAULT_ACCOUNT).is_ok());
    }
}
