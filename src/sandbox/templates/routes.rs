//! The template endpoints (`/template/add`, `/template/update/{templateId}`,
//! `/template/details/{templateId}`, `/template/list`): what callers send, how it is checked, and
//! the changes to the stored [`Template`]s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{PLACEHOLDER, Template};
use crate::sandbox::envelope::{self, ApiError, ApiResult, Success};
use crate::sandbox::lenient::{self, opt_int, opt_text};
use crate::sandbox::state::{self, Shared};

/// The voice languages the vendor documents.
const LANGUAGES: [&str; 14] = [
    "CN", "EN", "VN", "JP", "ARB", "DE", "IN", "IT", "KR", "RU", "ES", "PT", "IDN", "BD",
];

/// A template as callers send it (`appId` is read on add only; `templateId` is ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateIn {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    text: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    code_type: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    code_length: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    speech_rate: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    language: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_duration: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    repeat_cnt: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    sender_id: Option<String>,
}

impl TemplateIn {
    /// Validates every field except `appId`, into a template with placeholder ids.
    fn validate(self) -> Result<Template, ApiError> {
        let text = lenient::required_text("text", self.text.as_deref(), 1, 256)?;
        if !text.contains(PLACEHOLDER) {
            return Err(ApiError::parameter("text lacks ##code##"));
        }
        let code_type = lenient::ranged_or("codeType", self.code_type, 1, 4, 1)?;
        Ok(Template {
            template_id: 0,
            app_id: String::new(),
            name: lenient::required_text("name", self.name.as_deref(), 4, 32)?,
            text,
            code_type,
            code_length: lenient::ranged_or("codeLength", self.code_length, 4, 10, 4)?,
            speech_rate: lenient::ranged_or("speechRate", self.speech_rate, 0, 100, 50)?,
            language: language(self.language)?,
            max_duration: lenient::ranged_or("maxDuration", self.max_duration, 5, 599, 59)?,
            repeat_cnt: lenient::ranged_or("repeatCnt", self.repeat_cnt, 1, 10, 1)?,
            sender_id: self.sender_id,
        })
    }
}

fn language(value: Option<String>) -> Result<String, ApiError> {
    match value {
        None => Ok("EN".to_owned()),
        Some(lang) if LANGUAGES.contains(&lang.as_str()) => Ok(lang),
        Some(lang) => Err(ApiError::parameter(format!(
            "language {lang:?} is not supported"
        ))),
    }
}

/// `POST /template/add`.
pub async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<TemplateIn>(&body)?;
    let app_id = lenient::required_text("appId", input.app_id.as_deref(), 1, 64)?;
    let template = input.validate()?;
    let template = create(&mut shared.state(), app_id, template)?;
    Success::data(template)
}

/// `PUT /template/update/{templateId}`: replaces everything but the id and the app.
pub async fn update(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = lenient::path_id("templateId", &id)?;
    let template = lenient::body::<TemplateIn>(&body)?.validate()?;
    let template = replace(&mut shared.state(), id, template)?;
    Success::data(template)
}

/// `GET /template/details/{templateId}`.
pub async fn details(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = lenient::path_id("templateId", &id)?;
    let template = shared
        .state()
        .templates
        .get(&id)
        .cloned()
        .ok_or(ApiError::DataUnexisting)?;
    Success::data(template)
}

/// `GET /template/list`: every template of the account, oldest first.
pub async fn list(State(shared): State<Arc<Shared>>) -> ApiResult {
    let templates: Vec<Template> = shared.state().templates.values().cloned().collect();
    Success::data(templates)
}

fn create(
    state: &mut state::State,
    app_id: String,
    mut template: Template,
) -> Result<Template, ApiError> {
    if !state.apps.contains_key(&app_id) {
        return Err(ApiError::DataUnexisting);
    }
    ensure_name_free(state, &template.name, None)?;
    template.template_id = state.next_template_id();
    template.app_id = app_id;
    state
        .templates
        .insert(template.template_id, template.clone());
    Ok(template)
}

fn replace(
    state: &mut state::State,
    id: i64,
    mut template: Template,
) -> Result<Template, ApiError> {
    let app_id = state
        .templates
        .get(&id)
        .ok_or(ApiError::DataUnexisting)?
        .app_id
        .clone();
    ensure_name_free(state, &template.name, Some(id))?;
    template.template_id = id;
    template.app_id = app_id;
    state.templates.insert(id, template.clone());
    Ok(template)
}

/// Template names are unique; `except` is the template being renamed.
fn ensure_name_free(state: &state::State, name: &str, except: Option<i64>) -> Result<(), ApiError> {
    let taken = state
        .templates
        .values()
        .any(|t| t.name == name && Some(t.template_id) != except);
    envelope::unless_taken(taken)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn template(json: &str) -> Result<Template, ApiError> {
        lenient::body::<TemplateIn>(json.as_bytes())?.validate()
    }

    #[test]
    fn defaults_apply() {
        let t = template(r###"{"name":"name","text":"##code## is your code"}"###).unwrap();
        assert_eq!(
            (
                t.code_type,
                t.code_length,
                t.speech_rate,
                t.language.as_str()
            ),
            (1, 4, 50, "EN")
        );
        assert_eq!((t.max_duration, t.repeat_cnt, t.sender_id), (59, 1, None));
    }

    #[test]
    fn constraints_are_enforced() {
        for bad in [
            r#"{"name":"name","text":"no placeholder"}"#,
            r###"{"name":"nam","text":"##code##"}"###,
            r###"{"name":"name","text":"##code##","codeType":5}"###,
            r###"{"name":"name","text":"##code##","codeLength":11}"###,
            r###"{"name":"name","text":"##code##","speechRate":101}"###,
            r###"{"name":"name","text":"##code##","language":"FR"}"###,
            r###"{"name":"name","text":"##code##","maxDuration":4}"###,
            r###"{"name":"name","text":"##code##","repeatCnt":0}"###,
        ] {
            assert!(template(bad).is_err(), "{bad}");
        }
        let long = format!(
            r###"{{"name":"name","text":"##code##{}"}}"###,
            "x".repeat(249)
        );
        assert!(template(&long).is_err());
    }

    #[test]
    fn needs_an_existing_app_and_a_free_name() {
        let mut state = state::State::default();
        let t = template(r###"{"name":"name","text":"##code##"}"###).unwrap();
        assert_eq!(
            create(&mut state, "none".into(), t.clone()).unwrap_err(),
            ApiError::DataUnexisting
        );
    }

    #[test]
    fn the_text_and_a_documented_language_are_kept() {
        let t = template(r###"{"name":"name","text":"Code ##code##, 5 min","language":"JP"}"###)
            .unwrap();
        assert_eq!(
            (t.text(), t.language.as_str()),
            ("Code ##code##, 5 min", "JP")
        );
    }

    #[test]
    fn names_are_unique_but_a_template_may_keep_its_own() {
        let mut state = state::State::default();
        let mut t = template(r###"{"name":"name","text":"##code##"}"###).unwrap();
        t.template_id = 7;
        state.templates.insert(7, t);
        assert_eq!(
            ensure_name_free(&state, "name", None),
            Err(ApiError::DataExisting)
        );
        assert_eq!(
            ensure_name_free(&state, "name", Some(8)),
            Err(ApiError::DataExisting)
        );
        assert_eq!(ensure_name_free(&state, "name", Some(7)), Ok(()));
        assert_eq!(ensure_name_free(&state, "other", None), Ok(()));
    }
}
