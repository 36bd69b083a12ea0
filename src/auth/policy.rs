//! The access policy of a callers file: which credential names which caller, and what it may call.
//!
//! Tokens are never stored: each caller has the SHA-256 of its token, and a presented token is
//! hashed and compared with every caller's hash in constant time. A client certificate names a
//! caller by its subject, compared in its RFC 4514 form (`CN=checkout,O=Acme`).

use std::{collections::BTreeSet, fmt, sync::LazyLock};

use prost::Message;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;
use crate::{caller::Caller, proto};

/// One `[[callers]]` entry, validated.
#[derive(Clone)]
pub struct CallerRule {
    /// Who the credential names.
    pub caller: Caller,
    /// SHA-256 of the caller's bearer token.
    pub token_sha256: Option<[u8; 32]>,
    /// The client certificate subject that names this caller, normalized.
    pub client_subject: Option<String>,
    /// The methods it may call.
    pub allow: Vec<MethodPattern>,
}

impl fmt::Debug for CallerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerRule")
            .field("caller", &self.caller)
            .field("token_sha256", &self.token_sha256.map(|_| "<set>"))
            .field("client_subject", &self.client_subject)
            .field("allow", &self.allow)
            .finish()
    }
}

/// One `allow` entry: `*`, `package.Service/*` or `package.Service/Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodPattern {
    /// Every method of every service.
    Any,
    /// Every method of one service (`itnio.otp.v1.VerificationService`).
    Service(String),
    /// One method (`itnio.otp.v1.RecordService/GetRecord`).
    Method(String),
}

/// What a request presented.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The `authorization` metadata, if any.
    pub authorization: Option<&'a str>,
    /// The subject of the verified client certificate, if the connection has one.
    pub client_subject: Option<String>,
}

/// Who may call what, as one callers file says.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<CallerRule>,
}

impl Policy {
    /// A policy made of validated rules.
    pub fn new(rules: Vec<CallerRule>) -> Self {
        Self { rules }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[CallerRule] {
        &self.rules
    }

    /// The caller `credentials` name, if it may call `method` (`package.Service/Method`).
    /// A bearer token, when present, decides alone; otherwise the client certificate does.
    pub fn check(&self, credentials: &Credentials<'_>, method: &str) -> Result<Caller, AuthError> {
        let rule = match (credentials.authorization, &credentials.client_subject) {
            (Some(authorization), _) => self.by_token(bearer_token(authorization)?)?,
            (None, Some(subject)) => self.by_subject(subject)?,
            (None, None) => return Err(AuthError::MissingCredentials),
        };
        if rule.allow.iter().any(|pattern| pattern.matches(method)) {
            Ok(rule.caller.clone())
        } else {
            Err(AuthError::MethodNotAllowed {
                caller: rule.caller.name().to_owned(),
                method: method.to_owned(),
            })
        }
    }

    /// Compares the token's hash with every caller's, always all of them, in constant time.
    fn by_token(&self, token: &str) -> Result<&CallerRule, AuthError> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for rule in &self.rules {
            if let Some(hash) = &rule.token_sha256
                && bool::from(hash.ct_eq(&presented))
            {
                found = Some(rule);
            }
        }
        found.ok_or(AuthError::InvalidToken)
    }

    fn by_subject(&self, subject: &str) -> Result<&CallerRule, AuthError> {
        self.rules
            .iter()
            .find(|rule| rule.client_subject.as_deref() == Some(subject))
            .ok_or(AuthError::UnknownCertificate)
    }
}

/// The token of `Bearer <token>` (the scheme in any case, as RFC 9110 allows).
fn bearer_token(authorization: &str) -> Result<&str, AuthError> {
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedAuthorization)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MalformedAuthorization);
    }
    Ok(token)
}

/// A subject as the service compares it: its RFC 4514 attributes with upper-case names, in a
/// fixed order, joined by `,` (`cn=x, O=Acme` and `O=Acme,CN=x` both → `CN=x,O=Acme`). Order
/// does not matter because tools print subjects in both orders (openssl forward, RFC 4514 reversed).
pub fn normalize_subject(subject: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in split_unescaped(subject) {
        let (name, value) = part
            .split_once('=')
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
            .ok_or_else(|| {
                "client_subject must be RFC 4514 attributes, e.g. \"CN=checkout,O=Acme\"".to_owned()
            })?;
        parts.push(format!("{}={value}", name.to_ascii_uppercase()));
    }
    parts.sort();
    Ok(parts.join(","))
}

/// Splits at commas that are not escaped with a backslash (RFC 4514 `\,`).
fn split_unescaped(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Every `package.Service/Method` of our protos, from the descriptor set served by reflection.
static METHODS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    // The descriptor set is generated by build.rs from our own protos: it always decodes.
    let set =
        prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect()
});

impl MethodPattern {
    /// Parses one `allow` entry, refusing services and methods that do not exist.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim();
        let parsed = match pattern.split_once('/') {
            None if pattern == "*" => return Ok(Self::Any),
            Some((service, "*")) => Self::Service(service.to_owned()),
            Some(_) => Self::Method(pattern.to_owned()),
            None => Self::Method(pattern.to_owned()),
        };
        if METHODS.iter().any(|method| parsed.matches(method)) {
            Ok(parsed)
        } else {
            Err(format!(
                "allow: unknown method {pattern:?}; write \"*\", \"package.Service/*\" or \"package.Service/Method\" (e.g. \"itnio.otp.v1.RecordService/GetRecord\")"
            ))
        }
    }

    /// Whether `method` (`package.Service/Method`) falls under this pattern.
    pub fn matches(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Service(service) => method
                .split_once('/')
                .is_some_and(|(named, _)| named == service),
            Self::Method(exact) => method == exact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token";

    fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn policy() -> Policy {
        Policy::new(vec![
            CallerRule {
                caller: Caller::new("checkout", "default"),
                token_sha256: Some(hash(TOKEN)),
                client_subject: None,
                allow: vec![
                    MethodPattern::parse("itnio.otp.v1.VerificationService/*").expect("pattern"),
                    MethodPattern::parse("itnio.otp.v1.RecordService/GetRecord").expect("pattern"),
                ],
            },
            CallerRule {
                caller: Caller::new("ops", "brand-b"),
                token_sha256: Some(hash("other-token")),
                client_subject: Some("CN=ops,O=Acme".into()),
                allow: vec![MethodPattern::Any],
            },
        ])
    }

    fn token(authorization: &str) -> Credentials<'_> {
        Credentials {
            authorization: Some(authorization),
            client_subject: None,
        }
    }

    #[test]
    fn a_valid_token_names_its_caller_for_allowed_methods_only() {
        let policy = policy();
        let bearer = format!("Bearer {TOKEN}");
        for method in [
            "itnio.otp.v1.VerificationService/SendVerification",
            "itnio.otp.v1.RecordService/GetRecord",
        ] {
            let caller = policy.check(&token(&bearer), method).expect("allowed");
            assert_eq!(caller.name(), "checkout");
        }
        for method in [
            "itnio.otp.v1.RecordService/WatchRecord",
            "itnio.otp.v1.AppService/CreateApp",
            "itnio.otp.v1.VerificationServiceX/SendVerification",
        ] {
            match policy.check(&token(&bearer), method) {
                Err(AuthError::MethodNotAllowed { caller, method: m }) => {
                    assert_eq!((caller.as_str(), m.as_str()), ("checkout", method));
                }
                other => panic!("{method}: {other:?}"),
            }
        }
        let second = policy
            .check(
                &token("bearer  other-token "),
                "itnio.otp.v1.AppService/CreateApp",
            )
            .expect("second caller");
        assert_eq!((second.name(), second.account()), ("ops", "brand-b"));
    }

    #[test]
    fn wrong_missing_and_malformed_credentials_are_refused() {
        let policy = policy();
        let method = "itnio.otp.v1.RecordService/GetRecord";
        let check = |credentials: Credentials<'_>| policy.check(&credentials, method).err();
        assert!(matches!(
            check(token("Bearer nope")),
            Some(AuthError::InvalidToken)
        ));
        assert!(matches!(
            check(Credentials::default()),
            Some(AuthError::MissingCredentials)
        ));
        for malformed in [TOKEN, "Basic abc", "Bearer ", "Bearer"] {
            assert!(
                matches!(
                    check(token(malformed)),
                    Some(AuthError::MalformedAuthorization)
                ),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_certificate_subject_names_a_caller_unless_a_token_is_given() {
        let policy = policy();
        let method = "itnio.otp.v1.AppService/GetApp";
        let by_cert = |subject: &str, authorization| Credentials {
            authorization,
            client_subject: Some(subject.to_owned()),
        };
        let caller = policy
            .check(&by_cert("CN=ops,O=Acme", None), method)
            .expect("cert");
        assert_eq!(caller.name(), "ops");
        assert!(matches!(
            policy.check(&by_cert("CN=someone", None), method),
            Err(AuthError::UnknownCertificate)
        ));
        let bearer = format!("Bearer {TOKEN}");
        assert!(matches!(
            policy.check(&by_cert("CN=ops,O=Acme", Some(&bearer)), method),
            Err(AuthError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn patterns_are_checked_against_the_real_methods() {
        assert_eq!(MethodPattern::parse(" * "), Ok(MethodPattern::Any));
        assert!(MethodPattern::parse("itnio.otp.v1.FlowService/*").is_ok());
        assert!(MethodPattern::parse("itnio.otp.v1.FlowService/ListFlows").is_ok());
        for bad in [
            "itnio.otp.v1.FlowService",
            "itnio.otp.v1.FlowService/Nope",
            "itnio.otp.v1.Nope/*",
            "FlowService/ListFlows",
            "",
        ] {
            assert!(MethodPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(METHODS.len() >= 20, "{METHODS:?}");
    }

    #[test]
    fn subjects_are_normalized() {
        assert_eq!(
            normalize_subject("cn=x , O=Acme Corp").as_deref(),
            Ok("CN=x,O=Acme Corp")
        );
        for bad in ["x", "CN=", "=x", "CN=x,"] {
            assert!(normalize_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_token_hashes() {
        let text = format!("{:?}", policy());
        assert!(text.contains("token_sha256: Some(\"<set>\")"), "{text}");
        assert!(!text.contains(&hash(TOKEN)[0].to_string()), "{text}");
    }

    #[test]
    fn escaped_commas_stay_inside_a_value() {
        // `\,` is part of the value; `\\` is an escaped backslash, so the comma after it splits.
        assert_eq!(
            normalize_subject(r"O=Acme\, Inc,CN=x").as_deref(),
            Ok(r"CN=x,O=Acme\, Inc")
        );
        assert_eq!(
            normalize_subject(r"O=x\\,CN=a").as_deref(),
            Ok(r"CN=a,O=x\\")
        );
    }
}
