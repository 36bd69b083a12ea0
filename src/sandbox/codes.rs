//! Identifiers, generated OTP codes, test numbers and their scripted deliveries.
//!
//! Test numbers are every `to` starting with `999`: their generated code is predictable and
//! digits 4–5 choose how deliveries end (see the module doc of `sandbox`).

use rand::Rng;
use rand::distr::Alphanumeric;

/// The prefix that marks a test number.
const TEST_PREFIX: &str = "999";

/// How a template's codes are made (`codeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeType {
    Numeric,
    Alpha,
    Alphanumeric,
    Hex,
}

impl CodeType {
    /// From the wire value 1–4.
    pub fn from_wire(value: i64) -> Option<Self> {
        match value {
            1 => Some(Self::Numeric),
            2 => Some(Self::Alpha),
            3 => Some(Self::Alphanumeric),
            4 => Some(Self::Hex),
            _ => None,
        }
    }

    fn alphabet(self) -> &'static [u8] {
        match self {
            Self::Numeric => b"0123456789",
            Self::Alpha => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            Self::Alphanumeric => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            Self::Hex => b"0123456789ABCDEF",
        }
    }

    /// The known code a test number receives.
    fn test_code(self, length: usize) -> String {
        let source = match self {
            Self::Alpha => "ABCDEFGHIJ",
            _ => "1234567890",
        };
        source.chars().take(length).collect()
    }
}

/// A code for `to`: predictable for test numbers, random otherwise.
pub fn generate_code(kind: CodeType, length: usize, to: &str) -> String {
    if is_test_number(to) {
        return kind.test_code(length);
    }
    let alphabet = kind.alphabet();
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Whether `to` is a sandbox test number.
pub fn is_test_number(to: &str) -> bool {
    to.starts_with(TEST_PREFIX)
}

/// How deliveries to one number end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Script {
    /// Every SMS to the number fails.
    pub sms_fails: bool,
    /// Every call to the number is never answered.
    pub call_fails: bool,
}

/// The delivery script of `to`: digits 4–5 of a test number, success for everything else.
pub fn script_for(to: &str) -> Script {
    if !is_test_number(to) {
        return Script::default();
    }
    match to.get(3..5) {
        Some("01") => Script {
            sms_fails: true,
            call_fails: false,
        },
        Some("02") => Script {
            sms_fails: false,
            call_fails: true,
        },
        Some("03") => Script {
            sms_fails: true,
            call_fails: true,
        },
        _ => Script::default(),
    }
}

/// A plausible (mcc, mnc) for the number's country prefix; test numbers get the ITU test network 001/01.
pub fn network_for(to: &str) -> (i64, i64) {
    const PREFIXES: &[(&str, i64, i64)] = &[
        (TEST_PREFIX, 1, 1),
        ("86", 460, 0),
        ("91", 404, 10),
        ("84", 452, 4),
        ("81", 440, 10),
        ("62", 510, 10),
        ("44", 234, 10),
        ("49", 262, 1),
        ("7", 250, 1),
        ("1", 310, 260),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _, _)| to.starts_with(prefix))
        .map_or((460, 0), |&(_, mcc, mnc)| (mcc, mnc))
}

/// A fresh appId: 8 random alphanumerics, like `mRELxtHc`.
pub fn new_app_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// A verificationId: 20 digits, `2` + `yyMMddHHmmss` + a 7-digit sequence, like `22206051443051000003`.
pub fn verification_id(at: chrono::DateTime<chrono::Utc>, sequence: u64) -> String {
    format!("2{}{:07}", at.format("%y%m%d%H%M%S"), sequence % 10_000_000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_numbers_get_known_codes() {
        assert_eq!(generate_code(CodeType::Numeric, 4, "99900123456"), "1234");
        assert_eq!(
            generate_code(CodeType::Hex, 10, "99900123456"),
            "1234567890"
        );
        assert_eq!(generate_code(CodeType::Alpha, 6, "99901123456"), "ABCDEF");
        assert_eq!(
            generate_code(CodeType::Alphanumeric, 5, "99903123456"),
            "12345"
        );
    }

    #[test]
    fn random_codes_use_the_alphabet() {
        let code = generate_code(CodeType::Hex, 10, "8613512345678");
        assert_eq!(code.len(), 10);
        assert!(
            code.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        let code = generate_code(CodeType::Alpha, 8, "8613512345678");
        assert!(code.chars().all(|c| c.is_ascii_uppercase()));
    }

    #[test]
    fn scripts_follow_digits_four_and_five() {
        assert_eq!(script_for("99900123456"), Script::default());
        assert_eq!(
            script_for("99901123456"),
            Script {
                sms_fails: true,
                call_fails: false
            }
        );
        assert_eq!(
            script_for("99902123456"),
            Script {
                sms_fails: false,
                call_fails: true
            }
        );
        assert_eq!(
            script_for("99903123456"),
            Script {
                sms_fails: true,
                call_fails: true
            }
        );
        assert_eq!(script_for("91856321412"), Script::default());
    }

    #[test]
    fn ids_have_the_documented_shapes() {
        let app = new_app_id();
        assert_eq!(app.len(), 8);
        assert!(app.chars().all(|c| c.is_ascii_alphanumeric()));
        let id = verification_id(chrono::Utc::now(), 3);
        assert_eq!(id.len(), 20);
        assert!(id.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn networks_are_plausible() {
        assert_eq!(network_for("8613512345678"), (460, 0));
        assert_eq!(network_for("99900123456"), (1, 1));
    }

    #[test]
    fn code_types_come_from_wire_values_one_to_four() {
        let kinds: Vec<_> = (0..=5).map(CodeType::from_wire).collect();
        assert_eq!(
            kinds,
            [
                None,
                Some(CodeType::Numeric),
                Some(CodeType::Alpha),
                Some(CodeType::Alphanumeric),
                Some(CodeType::Hex),
                None
            ]
        );
    }

    #[test]
    fn only_numbers_starting_with_999_are_test_numbers() {
        assert!(is_test_number("99900123456"));
        assert!(!is_test_number("91856321412"));
        assert!(!is_test_number("89990012345"));
    }
}
