//! Templates: `CreateTemplate`/`UpdateTemplate` requests to `/template/*` bodies, and back.

use crate::{
    proto::v1::{self as pb, CodeType, Language},
    upstream as wire,
};

use super::{
    InvalidRequest, Violations,
    limits::{Layout, MAX_SENDER_ID_CHARS, NAME_CHARS, TEMPLATE_TEXT_CHARS},
    non_empty,
};

/// The placeholder every template text must contain.
const CODE_PLACEHOLDER: &str = "##code##";

/// The fields shared by create and update requests.
struct TemplateFields<'a> {
    name: &'a str,
    text: &'a str,
    code_type: i32,
    code_length: Option<i32>,
    speech_rate: Option<i32>,
    language: i32,
    max_duration_seconds: Option<i32>,
    repeat_count: Option<i32>,
    sender_id: &'a str,
}

/// The fields create and update requests share: the two messages name them alike.
macro_rules! template_fields {
    ($req:expr) => {
        TemplateFields {
            name: &$req.name,
            text: &$req.text,
            code_type: $req.code_type,
            code_length: $req.code_length,
            speech_rate: $req.speech_rate,
            language: $req.language,
            max_duration_seconds: $req.max_duration_seconds,
            repeat_count: $req.repeat_count,
            sender_id: &$req.sender_id,
        }
    };
}

/// Checks a `CreateTemplate` request and builds the `/template/add` body.
pub fn create_request(
    req: &pb::CreateTemplateRequest,
) -> Result<wire::TemplateRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.app_id("app_id", &req.app_id);
    let mut body = template_body(&mut v, template_fields!(req));
    body.app_id = Some(req.app_id.clone());
    v.finish(body)
}

/// Checks an `UpdateTemplate` request and builds the `/template/update/{templateId}` body.
pub fn update_request(
    req: &pb::UpdateTemplateRequest,
) -> Result<wire::TemplateRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.numeric_id("template_id", &req.template_id);
    let mut body = template_body(&mut v, template_fields!(req));
    body.template_id = Some(req.template_id.clone());
    v.finish(body)
}

/// Checks a `GetTemplate` request.
pub fn get_request(req: &pb::GetTemplateRequest) -> Result<(), InvalidRequest> {
    let mut v = Violations::default();
    v.numeric_id("template_id", &req.template_id);
    v.finish(())
}

fn template_body(v: &mut Violations, f: TemplateFields<'_>) -> wire::TemplateRequest {
    v.text("name", f.name, NAME_CHARS);
    if v.text_in("text", f.text, TEMPLATE_TEXT_CHARS, Layout::MultiLine)
        && !f.text.contains(CODE_PLACEHOLDER)
    {
        v.add("text", "must contain the placeholder ##code##");
    }
    let code_type = match CodeType::try_from(f.code_type) {
        Ok(CodeType::Unspecified) => None,
        Ok(code_type) => Some(code_type as i32),
        Err(_) => {
            v.add("code_type", "must be NUMERIC, ALPHA, ALPHANUMERIC or HEX");
            None
        }
    };
    v.range("code_length", f.code_length, 4..=10);
    v.range("speech_rate", f.speech_rate, 0..=100);
    v.range("max_duration_seconds", f.max_duration_seconds, 5..=599);
    v.range("repeat_count", f.repeat_count, 1..=10);
    let language = match Language::try_from(f.language) {
        Ok(Language::Unspecified) => None,
        Ok(language) => language_to_wire(language),
        Err(_) => {
            v.add("language", "must be one of the documented languages");
            None
        }
    };
    wire::TemplateRequest {
        app_id: None,
        template_id: None,
        name: f.name.to_owned(),
        text: f.text.to_owned(),
        code_type,
        code_length: f.code_length,
        speech_rate: f.speech_rate,
        language,
        max_duration: f.max_duration_seconds,
        repeat_cnt: f.repeat_count,
        sender_id: sender_id(v, f.sender_id),
    }
}

/// An optional sender id: empty means the account's default.
fn sender_id(v: &mut Violations, value: &str) -> Option<String> {
    v.text("sender_id", value, 0..=MAX_SENDER_ID_CHARS);
    non_empty(value)
}

/// The wire code of a language: its proto name without the `LANGUAGE_` prefix.
fn language_to_wire(language: Language) -> Option<String> {
    language
        .as_str_name()
        .strip_prefix("LANGUAGE_")
        .map(str::to_owned)
}

fn language_from_wire(language: Option<&str>) -> Language {
    language
        .map(|code| format!("LANGUAGE_{}", code.trim().to_ascii_uppercase()))
        .and_then(|name| Language::from_str_name(&name))
        .unwrap_or(Language::Unspecified)
}

/// The upstream template as proto.
pub fn from_wire(template: wire::Template) -> pb::Template {
    pb::Template {
        template_id: template.template_id,
        app_id: template.app_id.unwrap_or_default(),
        name: template.name,
        text: template.text,
        code_type: template
            .code_type
            .and_then(|c| CodeType::try_from(c).ok())
            .unwrap_or(CodeType::Unspecified) as i32,
        code_length: template.code_length.unwrap_or_default(),
        speech_rate: template.speech_rate.unwrap_or_default(),
        language: language_from_wire(template.language.as_deref()) as i32,
        max_duration_seconds: template.max_duration.unwrap_or_default(),
        repeat_count: template.repeat_cnt.unwrap_or_default(),
        sender_id: template.sender_id.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::tests::fields;

    #[test]
    fn languages_round_trip_through_wire_codes() {
        assert_eq!(language_to_wire(Language::Idn).as_deref(), Some("IDN"));
        assert_eq!(language_from_wire(Some("arb")), Language::Arb);
        assert_eq!(language_from_wire(Some("XX")), Language::Unspecified);
    }

    #[test]
    fn bad_template_reports_each_field() {
        let err = create_request(&pb::CreateTemplateRequest {
            app_id: String::new(),
            name: "ok name".into(),
            text: "no placeholder".into(),
            code_type: 9,
            code_length: Some(3),
            speech_rate: Some(101),
            language: 99,
            max_duration_seconds: Some(4),
            repeat_count: Some(11),
            sender_id: String::new(),
        })
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "app_id",
                "text",
                "code_type",
                "code_length",
                "speech_rate",
                "max_duration_seconds",
                "repeat_count",
                "language",
            ]
        );
    }

    #[test]
    fn defaults_are_left_to_upstream() {
        let body = create_request(&pb::CreateTemplateRequest {
            app_id: "mRELxtHc".into(),
            name: "login".into(),
            text: "##code## is your code".into(),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(body.code_type, None);
        assert_eq!(body.language, None);
        assert_eq!(body.sender_id, None);
    }

    fn create(app_id: &str, text: &str, sender_id: &str) -> pb::CreateTemplateRequest {
        pb::CreateTemplateRequest {
            app_id: app_id.into(),
            name: "login".into(),
            text: text.into(),
            sender_id: sender_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn app_and_sender_ids_are_bounded_and_clean() {
        let megabyte = "x".repeat(1 << 20);
        let err = create_request(&create(&megabyte, "##code##", &megabyte)).expect_err("1 MB");
        assert_eq!(fields(err), ["app_id", "sender_id"]);
        let err =
            create_request(&create("mREL\r\nxtHc", "##code##", "ACME\u{0}")).expect_err("ctl");
        assert_eq!(fields(err), ["app_id", "sender_id"]);
        let longest = "S".repeat(MAX_SENDER_ID_CHARS);
        let body = create_request(&create("mRELxtHc", "##code##", &longest)).expect("at the limit");
        assert_eq!(body.sender_id, Some(longest));
        let over = "S".repeat(MAX_SENDER_ID_CHARS + 1);
        let err = update_request(&pb::UpdateTemplateRequest {
            template_id: "455".into(),
            name: "login".into(),
            text: "##code##".into(),
            sender_id: over,
            ..Default::default()
        })
        .expect_err("over the limit");
        assert_eq!(fields(err), ["sender_id"]);
    }

    #[test]
    fn text_may_break_lines_but_not_override_direction() {
        let body = create_request(&create("mRELxtHc", "Code:\r\n##code##\n\u{200F}", ""))
            .expect("line breaks and marks are fine in a message");
        assert_eq!(body.text, "Code:\r\n##code##\n\u{200F}");
        for bad in [
            "##code##\u{202E}",
            "##code##\u{2067}",
            "\u{7}##code##",
            "##code##\u{1b}[0m",
        ] {
            let err = create_request(&create("mRELxtHc", bad, "")).expect_err(bad);
            assert_eq!(fields(err), ["text"], "{bad:?}");
        }
        // One violation per field: a text both too long and without the placeholder.
        let err = create_request(&create("mRELxtHc", &"x".repeat(257), "")).expect_err("long");
        assert_eq!(fields(err), ["text"]);
        let err = create_request(&pb::CreateTemplateRequest {
            name: "log\nin".into(),
            ..create("mRELxtHc", "##code##", "")
        })
        .expect_err("a name is one line");
        assert_eq!(fields(err), ["name"]);
    }
}
