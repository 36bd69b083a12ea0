//! Who is calling: the identity the authentication layer attaches to every request.
//!
//! The auth layer (bearer token or mTLS subject) puts a [`Caller`] into the request's extensions;
//! everything downstream — account routing, idempotency, quotas, logs and metrics — reads it with
//! [`Caller::of`]. Without authentication configured every request is [`Caller::anonymous`] on the
//! `default` account, so code below the auth layer never has to ask whether auth is on.

use std::{num::NonZeroU32, sync::Arc};

/// The account configured from the environment (`ITNIO_API_KEY` & co.).
pub const DEFAULT_ACCOUNT: &str = "default";
/// The caller name used when authentication is not configured.
pub const ANONYMOUS: &str = "anonymous";

/// An authenticated (or anonymous) caller and the ITNIO account it is routed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    name: Arc<str>,
    account: Arc<str>,
    sends_per_minute: Option<NonZeroU32>,
}

impl Caller {
    /// A caller named in the callers file, routed to `account`.
    pub fn new(name: impl Into<Arc<str>>, account: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            account: account.into(),
            sends_per_minute: None,
        }
    }

    /// The same caller, limited to `limit` sends per minute (`sends_per_minute` in the callers
    /// file), enforced across replicas by the shared store.
    pub fn with_sends_per_minute(mut self, limit: NonZeroU32) -> Self {
        self.sends_per_minute = Some(limit);
        self
    }

    /// The caller of a service that runs without authentication.
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS, DEFAULT_ACCOUNT)
    }

    /// The caller's name, as in the callers file (safe to log and to use as a metric label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the ITNIO account this caller's calls go to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The account name as a shared string, for metric labels without a copy per call.
    pub fn account_label(&self) -> Arc<str> {
        Arc::clone(&self.account)
    }

    /// The caller's own send rate limit, if the callers file sets one.
    pub fn sends_per_minute(&self) -> Option<NonZeroU32> {
        self.sends_per_minute
    }

    /// The caller the auth layer attached to `request`, or the anonymous one.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_else(Self::anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_caller_is_anonymous_on_the_default_account() {
        let caller = Caller::of(&tonic::Request::new(()));
        assert_eq!(caller.name(), ANONYMOUS);
        assert_eq!(caller.account(), DEFAULT_ACCOUNT);
        assert_eq!(caller.sends_per_minute(), None);
    }

    #[test]
    fn a_request_carries_the_caller_the_auth_layer_attached() {
        let mut request = tonic::Request::new(());
        request
            .extensions_mut()
            .insert(Caller::new("checkout", "brand-b").with_sends_per_minute(NonZeroU32::MIN));
        let caller = Caller::of(&request);
        assert_eq!(caller.name(), "checkout");
        assert_eq!(caller.account(), "brand-b");
        assert_eq!(caller.sends_per_minute(), Some(NonZeroU32::MIN));
    }

    #[test]
    fn the_account_label_is_the_account_name() {
        let caller = Caller::new("checkout", "brand-b");
        assert_eq!(&*caller.account_label(), "brand-b");
        assert_eq!(&*Caller::anonymous().account_label(), DEFAULT_ACCOUNT);
    }
}
