//! Caller authentication: who is calling, and may they call this method?
//!
//! ```text
//!  request ─► AuthLayer ─► health / reflection: open
//!                      └─► Policy::check(bearer token | client certificate subject, method)
//!                            ├─ refused: UNAUTHENTICATED / PERMISSION_DENIED with ErrorInfo
//!                            └─ Caller into the request's extensions ─► services (Caller::of)
//! ```
//!
//! The policy comes from the callers file ([`file`]), swapped as a whole when the file changes
//! (see [`crate::reload`]); calls in flight keep the policy they started with. Without a callers
//! file the layer lets everyone in as the anonymous caller on the `default` account. The caller
//! is noted in the call's `CallerSlot`, which records its name and account on the call's `rpc`
//! span (see [`crate::telemetry::rpc`]), so each log line of the call says on whose behalf and
//! on which account it happened, next to the call's request id.

pub mod file;
mod layer;
pub mod policy;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::info;

pub use file::{CallersFile, CallersFileError};
pub use layer::{AuthLayer, AuthService};
pub use policy::Policy;

use crate::{
    accounts::Accounts,
    reload::{Loaded, Swap, watch_files},
    upstream::BuildError,
};

/// Why a call was refused before reaching a service. The token is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata and no client certificate that names a caller.
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    MissingCredentials,
    /// The `authorization` metadata is not `Bearer <token>`.
    #[error("the authorization metadata must be `Bearer <token>`")]
    MalformedAuthorization,
    /// No caller has this token.
    #[error("unknown or revoked token")]
    InvalidToken,
    /// The client certificate is valid but names no caller.
    #[error("the client certificate names no caller")]
    UnknownCertificate,
    /// The caller may not call this method.
    #[error("caller {caller:?} may not call {method}")]
    MethodNotAllowed {
        /// The caller's name.
        caller: String,
        /// `package.Service/Method`.
        method: String,
    },
}

/// Who may call: everyone (no callers file), or what the current callers file says.
#[derive(Clone)]
pub enum Access {
    /// No callers file: every call is the anonymous caller on the `default` account.
    Open,
    /// Only callers of the policy in use, which a reload may replace.
    Callers(Arc<Swap<Policy>>),
}

/// Puts the callers file in use: its accounts into `accounts`, its policy behind the returned
/// [`Access`], and a task that reloads both when the file (or a secret file) changes or on
/// `SIGHUP`, until `stop` turns true. `None` (no callers file) is [`Access::Open`].
pub fn start(
    callers: Option<&Loaded<PathBuf, CallersFile>>,
    accounts: &Accounts,
    poll_interval: Duration,
    stop: watch::Receiver<bool>,
) -> Result<Access, BuildError> {
    let Some(loaded) = callers else {
        return Ok(Access::Open);
    };
    accounts.replace(&loaded.value.accounts)?;
    let policy = Arc::new(Swap::new(loaded.value.policy.clone()));
    info!(
        callers = loaded.value.policy.rules().len(),
        accounts = loaded.value.accounts.len() + 1,
        "callers file in use"
    );
    let path = loaded.source.clone();
    let (swap, accounts) = (Arc::clone(&policy), accounts.clone());
    crate::task::spawn(watch_files(
        "callers file",
        poll_interval,
        stop,
        loaded.fingerprint,
        move || file::load(&path),
        move |file: CallersFile| {
            accounts.replace(&file.accounts)?;
            swap.set(file.policy);
            Ok::<(), BuildError>(())
        },
    ));
    Ok(Access::Callers(policy))
}
