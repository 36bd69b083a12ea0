//! The callers file (`CALLERS_FILE`): who may call which methods, on which ITNIO account.
//!
//! ```toml
//! [[accounts]]
//! name = "brand-b"
//! base_url = "https://api.itniotech.com/otp"
//! api_key = "…"
//! api_secret_file = "brand-b.secret"     # relative to this file's directory
//!
//! [[callers]]
//! name = "checkout"
//! token_sha256 = "<hex sha256 of the token>"
//! client_subject = "CN=checkout"         # with TLS_CLIENT_CA_FILE: the certificate names the caller
//! allow = ["itnio.otp.v1.VerificationService/*", "itnio.otp.v1.RecordService/GetRecord"]
//! account = "brand-b"                    # optional, `default` is the environment's account
//! sends_per_minute = 60                  # optional
//! ```
//!
//! [`load`] validates the whole file (and reads every secret file) before anything is used:
//! unknown keys, methods and accounts, duplicate names, tokens or subjects are errors that name
//! the entry and never echo a hash, key or secret.

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::policy::{CallerRule, MethodPattern, Policy, normalize_subject};
use crate::{
    accounts::AccountSpec,
    caller::{Caller, DEFAULT_ACCOUNT},
    reload::{Attempt, FileReader},
    secret::Secret,
    upstream::base_url::check_base_url,
};

/// A valid callers file: the access policy and the extra accounts.
#[derive(Debug, Clone)]
pub struct CallersFile {
    /// Who may call what.
    pub policy: Policy,
    /// The `[[accounts]]`, besides `default`.
    pub accounts: Vec<AccountSpec>,
}

/// Why a callers file cannot be used; the message names the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum CallersFileError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or mistyped keys.
    #[error("{path} is not a valid callers file: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's explanation (line and key; values are not quoted for secrets).
        message: String,
    },
    /// An entry breaks a rule.
    #[error("{path}: {entry}: {problem}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// e.g. `callers[1] "checkout"`.
        entry: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    callers: Vec<RawCaller>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: String,
    token_sha256: Option<String>,
    client_subject: Option<String>,
    allow: Vec<String>,
    account: Option<String>,
    sends_per_minute: Option<NonZeroU32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    base_url: String,
    api_key: String,
    api_secret_file: PathBuf,
}

/// Reads and validates the callers file at `path` and the secret files it names.
pub fn load(path: &Path) -> Attempt<CallersFile, CallersFileError> {
    let mut reader = FileReader::default();
    let result = parse(path, &mut reader);
    Attempt {
        fingerprint: reader.fingerprint(),
        result,
    }
}

fn parse(path: &Path, reader: &mut FileReader) -> Result<CallersFile, CallersFileError> {
    let bytes = reader.read(path).map_err(|source| CallersFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| syntax(path, "not UTF-8".into()))?;
    let raw: RawFile = toml::from_str(&text).map_err(|e| syntax(path, e.message().to_owned()))?;
    let fail = |entry: String, problem: String| CallersFileError::Entry {
        path: path.to_owned(),
        entry,
        problem,
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let mut accounts = Vec::with_capacity(raw.accounts.len());
    for (i, account) in raw.accounts.into_iter().enumerate() {
        let entry = format!("accounts[{i}] {:?}", account.name);
        let spec =
            check_account(account, base_dir, reader, &accounts).map_err(|p| fail(entry, p))?;
        accounts.push(spec);
    }
    if raw.callers.is_empty() {
        return Err(fail("callers".into(), "no [[callers]] entry".into()));
    }
    let mut rules: Vec<CallerRule> = Vec::with_capacity(raw.callers.len());
    for (i, caller) in raw.callers.into_iter().enumerate() {
        let entry = format!("callers[{i}] {:?}", caller.name);
        let rule = check_caller(caller, &accounts, &rules).map_err(|p| fail(entry, p))?;
        rules.push(rule);
    }
    Ok(CallersFile {
        policy: Policy::new(rules),
        accounts,
    })
}

fn syntax(path: &Path, message: String) -> CallersFileError {
    CallersFileError::Syntax {
        path: path.to_owned(),
        message,
    }
}

fn check_account(
    raw: RawAccount,
    base_dir: &Path,
    reader: &mut FileReader,
    earlier: &[AccountSpec],
) -> Result<AccountSpec, String> {
    check_name(&raw.name)?;
    if raw.name == DEFAULT_ACCOUNT {
        return Err(
            "`default` is the account from the environment (ITNIO_API_KEY); choose another name"
                .into(),
        );
    }
    if earlier.iter().any(|a| a.name == raw.name) {
        return Err("the name is used by an earlier account".into());
    }
    let base_url = check_base_url(Some(raw.base_url)).map_err(|e| e.to_string())?;
    if raw.api_key.trim().is_empty() {
        return Err("api_key is empty".into());
    }
    let secret_path = base_dir.join(&raw.api_secret_file);
    let secret = reader
        .read(&secret_path)
        .map_err(|e| format!("cannot read api_secret_file {}: {e}", secret_path.display()))?;
    let secret = String::from_utf8(secret)
        .map_err(|_| "api_secret_file is not UTF-8".to_owned())?
        .trim_end()
        .to_owned();
    if secret.is_empty() {
        return Err("api_secret_file is empty".into());
    }
    Ok(AccountSpec {
        name: raw.name,
        base_url,
        api_key: raw.api_key,
        api_secret: Secret::new(secret),
    })
}

fn check_caller(
    raw: RawCaller,
    accounts: &[AccountSpec],
    earlier: &[CallerRule],
) -> Result<CallerRule, String> {
    check_name(&raw.name)?;
    if earlier.iter().any(|r| r.caller.name() == raw.name) {
        return Err("the name is used by an earlier caller".into());
    }
    let token_sha256 = raw.token_sha256.as_deref().map(parse_hash).transpose()?;
    if token_sha256.is_some_and(|hash| earlier.iter().any(|r| r.token_sha256 == Some(hash))) {
        return Err(
            "token_sha256 is the same as an earlier caller's: every caller needs its own token"
                .into(),
        );
    }
    let client_subject = raw
        .client_subject
        .as_deref()
        .map(normalize_subject)
        .transpose()?;
    if client_subject.is_some()
        && earlier
            .iter()
            .any(|r| r.client_subject.is_some() && r.client_subject == client_subject)
    {
        return Err("client_subject is the same as an earlier caller's".into());
    }
    if token_sha256.is_none() && client_subject.is_none() {
        return Err("needs token_sha256 or client_subject (or both)".into());
    }
    if raw.allow.is_empty() {
        return Err("allow is empty: list the methods this caller may call".into());
    }
    let allow = raw
        .allow
        .iter()
        .map(|pattern| MethodPattern::parse(pattern))
        .collect::<Result<Vec<_>, _>>()?;
    let account = raw.account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned());
    if account != DEFAULT_ACCOUNT && !accounts.iter().any(|a| a.name == account) {
        return Err(format!(
            "account {account:?} is neither `default` nor an [[accounts]] name"
        ));
    }
    let mut caller = Caller::new(raw.name, account);
    if let Some(limit) = raw.sends_per_minute {
        caller = caller.with_sends_per_minute(limit);
    }
    Ok(CallerRule {
        caller,
        token_sha256,
        client_subject,
        allow,
    })
}

/// Names appear in logs and metric labels: keep them short and plain.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err("name must be 1 to 64 characters of A-Z a-z 0-9 - _ .".into());
    }
    Ok(())
}

fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let problem = || "token_sha256 must be 64 hex digits (the SHA-256 of the token)".to_owned();
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(problem());
    }
    let mut hash = [0_u8; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| problem())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| problem())?;
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("itnio-callers-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    fn problem(name: &str, toml: &str) -> String {
        let dir = TempDir::new(name);
        dir.write("b.secret", "brand-b-secret\n");
        let path = dir.write("callers.toml", toml);
        match load(&path).result {
            Ok(_) => panic!("expected {name} to be refused"),
            Err(error) => error.to_string(),
        }
    }

    fn caller(extra: &str) -> String {
        format!(
            "[[callers]]\nname = \"checkout\"\ntoken_sha256 = \"{HASH}\"\nallow = [\"*\"]\n{extra}\n"
        )
    }

    const ACCOUNT: &str = "[[accounts]]\nname = \"brand-b\"\nbase_url = \"http://b.test/otp/\"\napi_key = \"b-key\"\napi_secret_file = \"b.secret\"\n";

    #[test]
    fn a_full_file_loads_with_secrets_read_relative_to_it() {
        let dir = TempDir::new("full");
        dir.write("b.secret", "brand-b-secret\n");
        let text = format!(
            "{ACCOUNT}{}[[callers]]\nname = \"ops\"\nclient_subject = \"CN=ops, O=Acme\"\nallow = [\"itnio.otp.v1.AppService/GetApp\"]\n",
            caller("account = \"brand-b\"\nsends_per_minute = 30")
        );
        let file = load(&dir.write("callers.toml", &text))
            .result
            .expect("valid file");
        assert_eq!(
            file.accounts,
            [AccountSpec {
                name: "brand-b".into(),
                base_url: "http://b.test/otp".into(),
                api_key: "b-key".into(),
                api_secret: Secret::new("brand-b-secret"),
            }]
        );
        let rules = file.policy.rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].caller.account(), "brand-b");
        assert_eq!(rules[0].caller.sends_per_minute(), NonZeroU32::new(30));
        assert_eq!(rules[0].token_sha256.map(|h| h[0]), Some(0x9f));
        assert_eq!(rules[0].token_sha256.map(|h| h[31]), Some(0x08));
        assert_eq!(rules[1].caller.account(), DEFAULT_ACCOUNT);
        assert_eq!(rules[1].caller.sends_per_minute(), None);
        assert_eq!(rules[1].client_subject.as_deref(), Some("CN=ops,O=Acme"));
        assert_eq!(rules[1].token_sha256, None);
    }

    #[test]
    fn every_rule_is_checked() {
        let cases = [
            (
                "syntax",
                "[[callers]\n".to_owned(),
                "not a valid callers file",
            ),
            ("unknown-key", caller("tokn = \"x\""), "unknown field"),
            ("empty", String::new(), "no [[callers]] entry"),
            (
                "bad-name",
                caller("").replace("checkout", "check out"),
                "name must be",
            ),
            (
                "short-hash",
                caller("").replace(HASH, "abc"),
                "64 hex digits",
            ),
            (
                "not-hex",
                caller("").replace(HASH, &"g".repeat(64)),
                "64 hex digits",
            ),
            (
                "no-credential",
                caller("").replace(&format!("token_sha256 = \"{HASH}\"\n"), ""),
                "needs token_sha256 or client_subject",
            ),
            (
                "empty-allow",
                caller("").replace("[\"*\"]", "[]"),
                "allow is empty",
            ),
            (
                "unknown-method",
                caller("").replace("[\"*\"]", "[\"itnio.otp.v1.AppService/Delete\"]"),
                "unknown method",
            ),
            (
                "unknown-account",
                caller("account = \"brand-x\""),
                "neither `default` nor",
            ),
            (
                "zero-rate",
                caller("sends_per_minute = 0"),
                "not a valid callers file",
            ),
            (
                "same-name",
                format!(
                    "{}{}",
                    caller(""),
                    caller("").replace(HASH, &"0".repeat(64))
                ),
                "used by an earlier caller",
            ),
            (
                "same-token",
                format!("{}{}", caller(""), caller("").replace("checkout", "other")),
                "same as an earlier caller",
            ),
            (
                "default-account",
                format!("{}{}", ACCOUNT.replace("brand-b", "default"), caller("")),
                "account from the environment",
            ),
            (
                "same-account",
                format!("{ACCOUNT}{ACCOUNT}{}", caller("")),
                "used by an earlier account",
            ),
            (
                "bad-url",
                format!(
                    "{}{}",
                    ACCOUNT.replace("http://b.test/otp/", "b.test"),
                    caller("")
                ),
                "ITNIO_BASE_URL must start",
            ),
            (
                "no-secret",
                format!(
                    "{}{}",
                    ACCOUNT.replace("b.secret", "missing.secret"),
                    caller("")
                ),
                "cannot read api_secret_file",
            ),
            (
                "empty-key",
                format!("{}{}", ACCOUNT.replace("b-key", " "), caller("")),
                "api_key is empty",
            ),
        ];
        for (name, toml, expected) in cases {
            let message = problem(name, &toml);
            assert!(message.contains(expected), "{name}: {message}");
            assert!(!message.contains(HASH), "{name} leaks the hash: {message}");
        }
    }

    #[test]
    fn subjects_must_be_unique_and_well_formed() {
        let with_subject = |name: &str, subject: &str| {
            format!(
                "[[callers]]\nname = \"{name}\"\nclient_subject = \"{subject}\"\nallow = [\"*\"]\n"
            )
        };
        let twice = format!("{}{}", with_subject("a", "CN=x"), with_subject("b", "CN=x"));
        assert!(problem("same-subject", &twice).contains("client_subject is the same"));
        assert!(problem("bad-subject", &with_subject("a", "checkout")).contains("client_subject"));
    }

    #[test]
    fn an_empty_secret_file_and_a_missing_file_are_refused() {
        let dir = TempDir::new("empty-secret");
        dir.write("b.secret", " \n");
        let path = dir.write("callers.toml", &format!("{ACCOUNT}{}", caller("")));
        let message = load(&path).result.expect_err("refused").to_string();
        assert!(message.contains("api_secret_file is empty"), "{message}");
        assert!(!message.contains("b-key"), "{message}");
        let missing = load(&dir.0.join("nothing.toml"))
            .result
            .expect_err("refused");
        assert!(matches!(missing, CallersFileError::Read { .. }));
    }

    #[test]
    fn names_are_1_to_64_plain_characters() {
        let named = |name: &str| caller("").replace("\"checkout\"", &format!("{name:?}"));
        let dir = TempDir::new("names");
        for good in ["a".repeat(64), "A-z_0.9".into()] {
            let path = dir.write("callers.toml", &named(&good));
            assert!(load(&path).result.is_ok(), "{good:?} is refused");
        }
        for bad in [String::new(), "a".repeat(65), "é".into()] {
            let message = problem("bad-names", &named(&bad));
            assert!(
                message.contains("name must be 1 to 64"),
                "{bad:?}: {message}"
            );
        }
    }

    #[test]
    fn callers_with_different_subjects_load_together() {
        let with_subject = |name: &str, subject: &str| {
            format!(
                "[[callers]]\nname = \"{name}\"\nclient_subject = \"{subject}\"\nallow = [\"*\"]\n"
            )
        };
        let dir = TempDir::new("two-subjects");
        let text = format!("{}{}", with_subject("a", "CN=a"), with_subject("b", "CN=b"));
        let file = load(&dir.write("callers.toml", &text))
            .result
            .expect("two subjects");
        let subjects: Vec<_> = file
            .policy
            .rules()
            .iter()
            .map(|rule| rule.client_subject.as_deref())
            .collect();
        assert_eq!(subjects, [Some("CN=a"), Some("CN=b")]);
    }
}
