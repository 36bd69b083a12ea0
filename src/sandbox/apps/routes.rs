//! The app endpoints (`/app/add`, `/app/update/{appId}`, `/app/details/{appId}`): what callers
//! send, how it is checked, and the changes to the stored [`App`]s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::App;
use crate::sandbox::envelope::{self, ApiError, ApiResult, Success};
use crate::sandbox::lenient::{self, opt_int, opt_text};
use crate::sandbox::limits::{Limit, LimitIn};
use crate::sandbox::state::{self, Shared};
use crate::sandbox::{clock, codes};

/// An app as callers send it (add and update; a repeated `appId` is ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppIn {
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    code_expiry: Option<i64>,
    #[serde(default)]
    period_total_send_limit: Option<LimitIn>,
    #[serde(default)]
    period_phone_send_limit: Option<LimitIn>,
}

/// The validated, caller-settable part of an app.
#[derive(Debug, Clone)]
struct AppSpec {
    name: String,
    code_expiry: i64,
    total: Limit,
    phone: Limit,
}

impl AppIn {
    fn validate(self) -> Result<AppSpec, ApiError> {
        Ok(AppSpec {
            name: lenient::required_text("name", self.name.as_deref(), 4, 32)?,
            code_expiry: lenient::ranged_or("codeExpiry", self.code_expiry, 1, 60, 5)?,
            total: Limit::parse("periodTotalSendLimit", self.period_total_send_limit)?,
            phone: Limit::parse("periodPhoneSendLimit", self.period_phone_send_limit)?,
        })
    }
}

impl App {
    fn apply(&mut self, spec: AppSpec) {
        self.name = spec.name;
        self.code_expiry = spec.code_expiry;
        self.period_total_send_limit = spec.total;
        self.period_phone_send_limit = spec.phone;
    }
}

/// `POST /app/add`.
pub async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let spec = lenient::body::<AppIn>(&body)?.validate()?;
    let app = create(&mut shared.state(), spec)?;
    Success::data(app)
}

/// `PUT /app/update/{appId}`: replaces name, expiry and limits.
pub async fn update(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let spec = lenient::body::<AppIn>(&body)?.validate()?;
    let app = replace(&mut shared.state(), &app_id, spec)?;
    Success::data(app)
}

/// `GET /app/details/{appId}`.
pub async fn details(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> ApiResult {
    let app = shared
        .state()
        .apps
        .get(&app_id)
        .cloned()
        .ok_or(ApiError::DataUnexisting)?;
    Success::data(app)
}

fn create(state: &mut state::State, spec: AppSpec) -> Result<App, ApiError> {
    ensure_name_free(state, &spec.name, None)?;
    let app_id = loop {
        let candidate = codes::new_app_id();
        if !state.apps.contains_key(&candidate) {
            break candidate;
        }
    };
    let app = App {
        name: spec.name,
        app_id: app_id.clone(),
        period_total_send_limit: spec.total,
        period_phone_send_limit: spec.phone,
        code_expiry: spec.code_expiry,
        create_time: clock::iso(clock::now()),
    };
    state.apps.insert(app_id, app.clone());
    Ok(app)
}

fn replace(state: &mut state::State, app_id: &str, spec: AppSpec) -> Result<App, ApiError> {
    if !state.apps.contains_key(app_id) {
        return Err(ApiError::DataUnexisting);
    }
    ensure_name_free(state, &spec.name, Some(app_id))?;
    let app = state.apps.get_mut(app_id).ok_or(ApiError::DataUnexisting)?;
    app.apply(spec);
    Ok(app.clone())
}

/// App names are unique; `except` is the app being renamed.
fn ensure_name_free(
    state: &state::State,
    name: &str,
    except: Option<&str>,
) -> Result<(), ApiError> {
    let taken = state
        .apps
        .values()
        .any(|app| app.name == name && Some(app.app_id.as_str()) != except);
    envelope::unless_taken(taken)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<AppSpec, ApiError> {
        lenient::body::<AppIn>(json.as_bytes())?.validate()
    }

    #[test]
    fn vendor_sample_bodies_are_accepted() {
        let s = spec(r#"{"name":"test_app","codeExpiry":"5","appId":"x","periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":1},"periodPhoneSendLimit":{"enabled":false,"unit":null,"period":null,"limit":null}}"#).unwrap();
        assert_eq!(
            (
                s.name.as_str(),
                s.code_expiry,
                s.total.enabled,
                s.phone.enabled
            ),
            ("test_app", 5, true, false)
        );
    }

    #[test]
    fn rules_are_enforced() {
        assert!(spec(r#"{"codeExpiry":5}"#).is_err());
        assert!(spec(r#"{"name":"abc"}"#).is_err());
        assert!(spec(r#"{"name":"abcd","codeExpiry":61}"#).is_err());
        assert!(spec(r#"{"name":"abcd","codeExpiry":null}"#).is_ok_and(|s| s.code_expiry == 5));
    }

    #[test]
    fn names_are_unique_and_renames_checked() {
        let mut state = state::State::default();
        let a = create(&mut state, spec(r#"{"name":"first"}"#).unwrap()).unwrap();
        let b = create(&mut state, spec(r#"{"name":"second"}"#).unwrap()).unwrap();
        assert_eq!(
            create(&mut state, spec(r#"{"name":"first"}"#).unwrap()).unwrap_err(),
            ApiError::DataExisting
        );
        assert_eq!(
            replace(&mut state, &b.app_id, spec(r#"{"name":"first"}"#).unwrap()).unwrap_err(),
            ApiError::DataExisting
        );
        assert!(
            replace(
                &mut state,
                &a.app_id,
                spec(r#"{"name":"first","codeExpiry":9}"#).unwrap()
            )
            .is_ok_and(|a| a.code_expiry == 9)
        );
        assert_eq!(
            replace(&mut state, "nope", spec(r#"{"name":"third"}"#).unwrap()).unwrap_err(),
            ApiError::DataUnexisting
        );
    }
}
