//! Templates: the message text with `##code##` and how codes are generated and spoken. This file
//! is the template as the sandbox stores it (what `state` holds, and what a send reads);
//! [`routes`] is the endpoints (`/template/add`, `/template/update/{templateId}`,
//! `/template/details/{templateId}`, `/template/list`). Names are unique account-wide;
//! templateIds count up from a high base (see `state`).

pub mod routes;

use serde::Serialize;

use super::codes::CodeType;

/// The placeholder every template text must contain.
pub const PLACEHOLDER: &str = "##code##";

/// A stored template, in its wire shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub template_id: i64,
    pub app_id: String,
    pub name: String,
    text: String,
    pub code_type: i64,
    pub code_length: i64,
    speech_rate: i64,
    language: String,
    max_duration: i64,
    repeat_cnt: i64,
    pub sender_id: Option<String>,
}

impl Template {
    /// The message text, with `##code##` still in it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How this template's codes are generated.
    pub fn code_kind(&self) -> CodeType {
        CodeType::from_wire(self.code_type).unwrap_or(CodeType::Numeric)
    }
}
