//! Phone numbers as the send guard and ITNIO need them: parsed and validated against
//! libphonenumber's numbering plans (the `phonenumber` crate), so every send knows its country
//! and number type before anything is counted or sent.
//!
//! A number must be E.164 (`+`, country code, number; spaces, dashes, dots and brackets are
//! allowed between digits) unless a default region is configured (`PHONE_DEFAULT_REGION`), in
//! which case a national number (`(415) 555-0134`) is read in that region. A number that does
//! not parse, has the wrong length for its country or lies outside every assigned range is
//! refused with a reason, never with the number itself. The sandbox's test numbers (`999…`,
//! whose codes are known) are accepted only where [`PhoneRules::test_numbers`] allows them.

use std::{fmt, str::FromStr};

use phonenumber::{Mode, PhoneNumber, Type, country::Id, metadata::DATABASE};
use serde::{Deserialize, Serialize};

/// The country of numbers outside any country: satellite, international networks, +800
/// freephone (libphonenumber's "unknown region").
pub const NON_GEOGRAPHIC: Country = Country(*b"ZZ");
/// The country of the sandbox's test numbers (a user-assigned ISO 3166 code).
pub const TEST_COUNTRY: Country = Country(*b"XT");
/// The digits every sandbox test number starts with.
const TEST_PREFIX: &str = "999";
/// The number [`PhoneRules::warm_up`] parses: a UK mobile number in E.164.
const WARM_UP_NUMBER: &str = "+44 7400 123456";

/// An ISO 3166-1 alpha-2 country code, upper case; also [`NON_GEOGRAPHIC`] and [`TEST_COUNTRY`].
/// At most a few hundred values exist, so it is safe as a metric label.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// The code, e.g. `GB`.
    pub fn as_str(&self) -> &str {
        // Only ever built from two ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Country {
    type Err = String;

    /// A known region (`gb` and `GB` alike), `ZZ` or `XT`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let upper = value.trim().to_ascii_uppercase();
        let special = [NON_GEOGRAPHIC, TEST_COUNTRY];
        if let Some(country) = special.into_iter().find(|c| c.as_str() == upper) {
            return Ok(country);
        }
        match (Id::from_str(&upper), upper.as_bytes()) {
            (Ok(_), &[a, b]) => Ok(Self([a, b])),
            _ => Err(format!("{value:?} is not an ISO 3166 alpha-2 country code")),
        }
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
}

/// What kind of line a number is, from its country's numbering plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    /// A mobile phone.
    Mobile,
    /// A landline.
    FixedLine,
    /// Either; some plans (US, Canada, …) do not tell them apart.
    FixedLineOrMobile,
    /// Freephone (the callee pays).
    TollFree,
    /// Premium rate: the caller pays extra, and someone earns it.
    PremiumRate,
    /// Shared cost between caller and callee.
    SharedCost,
    /// A personal number forwarded elsewhere (e.g. UK 070).
    PersonalNumber,
    /// Voice over IP.
    Voip,
    /// A pager.
    Pager,
    /// A universal access (company) number.
    Uan,
    /// Voicemail access.
    Voicemail,
    /// Any other valid number (short codes, carrier-specific services, …).
    Other,
}

impl NumberType {
    /// The snake_case name used in the policy file, logs and error details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::FixedLine => "fixed_line",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::TollFree => "toll_free",
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::PersonalNumber => "personal_number",
            Self::Voip => "voip",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Voicemail => "voicemail",
            Self::Other => "other",
        }
    }

    fn of(kind: Type) -> Self {
        match kind {
            Type::Mobile => Self::Mobile,
            Type::FixedLine => Self::FixedLine,
            Type::FixedLineOrMobile => Self::FixedLineOrMobile,
            Type::TollFree => Self::TollFree,
            Type::PremiumRate => Self::PremiumRate,
            Type::SharedCost => Self::SharedCost,
            Type::PersonalNumber => Self::PersonalNumber,
            Type::Voip => Self::Voip,
            Type::Pager => Self::Pager,
            Type::Uan => Self::Uan,
            Type::Voicemail => Self::Voicemail,
            _ => Self::Other,
        }
    }
}

/// A valid number and what the guard needs to know about it.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// E.164 without the `+`: what ITNIO is sent. Never log it.
    pub digits: String,
    /// Where the number is.
    pub country: Country,
    /// What kind of line it is.
    pub number_type: NumberType,
}

impl fmt::Debug for Destination {
    /// Country and type only: the number stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("country", &self.country)
            .field("number_type", &self.number_type)
            .finish_non_exhaustive()
    }
}

/// How numbers are read: the region of national numbers and whether test numbers pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneRules {
    /// Region of numbers given without `+` (`PHONE_DEFAULT_REGION`); `None` requires E.164.
    pub default_region: Option<Country>,
    /// Whether the sandbox's `999…` test numbers are accepted (sandbox mode only).
    pub test_numbers: bool,
}

/// The longest `phone_number` read: 15 digits of E.164 with a `+`, brackets and separators fit
/// with room to spare.
pub const MAX_INPUT_CHARS: usize = 32;

/// Why a number was refused; the message is a field violation's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Letters or other characters that are not part of a number.
    /// Longer than any written number: refused before it is parsed.
    #[error("must be at most {MAX_INPUT_CHARS} characters")]
    InputTooLong,
    #[error("may contain only digits, a leading \"+\", spaces, dashes, dots and brackets")]
    Characters,
    /// No `+` and no default region to read a national number in.
    #[error("must be in E.164 format: \"+\", the country code, then the number")]
    NotInternational,
    /// Not a number at all.
    #[error("is not a phone number")]
    NotANumber,
    /// The country calling code does not exist.
    #[error("has no valid country calling code")]
    UnknownCountryCode,
    /// Fewer digits than any number of its country.
    #[error("is too short for its country")]
    TooShort,
    /// More digits than any number of its country.
    #[error("is too long for its country")]
    TooLong,
    /// A length no number of its country has.
    #[error("has a length no number of its country has")]
    ImpossibleLength,
    /// The right length, but in no assigned range of the numbering plan.
    #[error("is not in an assigned range of its country's numbering plan")]
    Unassigned,
    /// Extensions cannot receive a code.
    #[error("must not have an extension")]
    Extension,
    /// A sandbox test number where they are not accepted.
    #[error("is a sandbox test number (999…), accepted only in sandbox mode")]
    TestNumber,
}

impl PhoneRules {
    /// Parses `input` into a destination, or says why it is not one.
    pub fn parse(&self, input: &str) -> Result<Destination, PhoneError> {
        if input.chars().count() > MAX_INPUT_CHARS {
            return Err(PhoneError::InputTooLong);
        }
        let input = input.trim();
        let body = input.strip_prefix('+');
        let allowed = |c: char| c.is_ascii_digit() || " -.()".contains(c);
        if !body.unwrap_or(input).chars().all(allowed) {
            return Err(PhoneError::Characters);
        }
        let digits: String = input.chars().filter(char::is_ascii_digit).collect();
        if body.is_some() && digits.starts_with(TEST_PREFIX) {
            return self.test_number(digits);
        }
        let region = match (body, self.default_region) {
            (Some(_), _) => None,
            (None, Some(region)) => Some(region),
            (None, None) => return Err(PhoneError::NotInternational),
        };
        let region = region.and_then(|r| Id::from_str(r.as_str()).ok());
        let number = phonenumber::parse(region, input).map_err(parse_error)?;
        destination(&number)
    }

    /// Does now, once per process, what would otherwise make the first send slow: loads
    /// libphonenumber's metadata (every region's plan; its regular expressions are syntax-checked
    /// as it loads), compiles the parser's own regular expressions, and compiles the patterns of
    /// the United Kingdom (a mobile number in E.164) and, when national numbers are read in a
    /// default region, that region's (its example mobile number, read as a national number).
    /// Tens of milliseconds of CPU (most of the 72.8 ms a first send used to take); the server
    /// runs it before health says SERVING. Other regions still compile their own patterns on
    /// their first number (a few ms each).
    pub fn warm_up(&self) {
        let e164 = PhoneRules {
            default_region: None,
            test_numbers: false,
        };
        let _ = e164.parse(WARM_UP_NUMBER);
        if let Some(national) = self.default_region.and_then(example_mobile) {
            let _ = self.parse(&national);
        }
    }

    /// A sandbox test number: 10–14 digits after `999`'s prefix, as the sandbox accepts them.
    fn test_number(&self, digits: String) -> Result<Destination, PhoneError> {
        if !self.test_numbers {
            return Err(PhoneError::TestNumber);
        }
        match digits.len() {
            ..10 => Err(PhoneError::TooShort),
            15.. => Err(PhoneError::TooLong),
            _ => Ok(Destination {
                digits,
                country: TEST_COUNTRY,
                number_type: NumberType::Mobile,
            }),
        }
    }
}

/// The example mobile number of `region`'s numbering plan, as a national number; `None` for a
/// region without one (the sandbox's `XT`).
fn example_mobile(region: Country) -> Option<String> {
    DATABASE
        .by_id(region.as_str())
        .and_then(|plan| plan.descriptors().mobile())
        .and_then(|mobile| mobile.example())
        .map(str::to_owned)
}

/// Every national-number length of a country calling code, shortest first (libphonenumber
/// keeps them per number type, and per region where regions share a code).
fn possible_lengths(code: u16) -> Option<Vec<u16>> {
    const KINDS: [Type; 10] = [
        Type::FixedLine,
        Type::Mobile,
        Type::TollFree,
        Type::PremiumRate,
        Type::SharedCost,
        Type::PersonalNumber,
        Type::Voip,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
    ];
    let regions = DATABASE.by_code(&code)?;
    let mut lengths: Vec<u16> = regions
        .iter()
        .flat_map(|region| {
            KINDS
                .iter()
                .filter_map(|&kind| region.descriptors().get(kind))
        })
        .flat_map(|descriptor| descriptor.possible_length().iter().copied())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    Some(lengths)
}

fn parse_error(error: phonenumber::ParseError) -> PhoneError {
    use phonenumber::ParseError as P;
    match error {
        P::InvalidCountryCode => PhoneError::UnknownCountryCode,
        P::TooShortAfterIdd | P::TooShortNsn => PhoneError::TooShort,
        P::TooLong => PhoneError::TooLong,
        _ => PhoneError::NotANumber,
    }
}

/// Checks a parsed number against its country's plan.
fn destination(number: &PhoneNumber) -> Result<Destination, PhoneError> {
    if number.extension().is_some() {
        return Err(PhoneError::Extension);
    }
    let lengths = possible_lengths(number.code().value()).ok_or(PhoneError::UnknownCountryCode)?;
    let national = number.national().to_string();
    let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
    match (lengths.first(), lengths.last()) {
        (Some(&min), _) if length < min => return Err(PhoneError::TooShort),
        (_, Some(&max)) if length > max => return Err(PhoneError::TooLong),
        _ if !lengths.contains(&length) => return Err(PhoneError::ImpossibleLength),
        _ => {}
    }
    if !number.is_valid() {
        return Err(PhoneError::Unassigned);
    }
    let e164 = number.format().mode(Mode::E164).to_string();
    let country = match number.country().id() {
        Some(id) => id.as_ref().parse().unwrap_or(NON_GEOGRAPHIC),
        None => NON_GEOGRAPHIC,
    };
    Ok(Destination {
        digits: e164.trim_start_matches('+').to_owned(),
        country,
        number_type: NumberType::of(number.number_type(&DATABASE)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_libphonenumber_type_has_its_own_name() {
        let table = [
            (Type::Mobile, "mobile"),
            (Type::FixedLine, "fixed_line"),
            (Type::FixedLineOrMobile, "fixed_line_or_mobile"),
            (Type::TollFree, "toll_free"),
            (Type::PremiumRate, "premium_rate"),
            (Type::SharedCost, "shared_cost"),
            (Type::PersonalNumber, "personal_number"),
            (Type::Voip, "voip"),
            (Type::Pager, "pager"),
            (Type::Uan, "uan"),
            (Type::Voicemail, "voicemail"),
            (Type::ShortCode, "other"),
            (Type::Unknown, "other"),
        ];
        for (kind, name) in table {
            assert_eq!(NumberType::of(kind).as_str(), name, "{kind:?}");
        }
    }

    // `warm_up` only makes later parses faster, which no unit test can see: tests/warm_start.rs
    // checks that the server runs it before SERVING. Its parse of the default region's example
    // is equivalent for cargo-mutants (leaving it out is only slower); the example itself is
    // checked here.
    #[test]
    fn the_warm_up_reads_a_real_mobile_number_of_the_default_region() {
        for region in ["GB", "US", "DE", "IN"] {
            let country: Country = region.parse().unwrap();
            let national = example_mobile(country).unwrap();
            assert!(!national.starts_with('+'), "{region}: a national number");
            let rules = PhoneRules {
                default_region: Some(country),
                test_numbers: false,
            };
            let destination = rules.parse(&national).unwrap();
            assert_eq!(destination.country, country, "{region}");
            assert!(
                matches!(
                    destination.number_type,
                    NumberType::Mobile | NumberType::FixedLineOrMobile
                ),
                "{region}: {:?}",
                destination.number_type
            );
        }
        assert_eq!(example_mobile(TEST_COUNTRY), None);
        assert!(E164.parse(WARM_UP_NUMBER).is_ok());
    }

    #[test]
    fn parse_errors_name_their_cause() {
        use phonenumber::ParseError as P;
        assert_eq!(
            parse_error(P::InvalidCountryCode),
            PhoneError::UnknownCountryCode
        );
        assert_eq!(parse_error(P::TooShortAfterIdd), PhoneError::TooShort);
        assert_eq!(parse_error(P::TooShortNsn), PhoneError::TooShort);
        assert_eq!(parse_error(P::TooLong), PhoneError::TooLong);
        assert_eq!(parse_error(P::NoNumber), PhoneError::NotANumber);
    }

    #[test]
    fn an_input_longer_than_any_number_is_refused_before_parsing() {
        let padded = format!("+44 7400 900123{}", " ".repeat(MAX_INPUT_CHARS - 15));
        assert_eq!(padded.chars().count(), MAX_INPUT_CHARS);
        assert!(E164.parse(&padded).is_ok(), "at the limit");
        let over = format!("{padded} ");
        assert_eq!(E164.parse(&over).unwrap_err(), PhoneError::InputTooLong);
        assert_eq!(
            E164.parse(&format!("+44 7400 900123{}", " ".repeat(1 << 20)))
                .unwrap_err()
                .to_string(),
            "must be at most 32 characters"
        );
    }

    const E164: PhoneRules = PhoneRules {
        default_region: None,
        test_numbers: false,
    };

    fn parsed(rules: PhoneRules, input: &str) -> (String, &'static str, NumberType) {
        let d = rules
            .parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        let country = match d.country.as_str() {
            "GB" => "GB",
            "US" => "US",
            "DE" => "DE",
            "IN" => "IN",
            "CN" => "CN",
            "ZZ" => "ZZ",
            "XT" => "XT",
            other => panic!("unexpected country {other}"),
        };
        (d.digits, country, d.number_type)
    }

    #[test]
    fn e164_numbers_give_digits_country_and_type() {
        assert_eq!(
            parsed(E164, "+44 7400 123456"),
            ("447400123456".into(), "GB", NumberType::Mobile)
        );
        assert_eq!(
            parsed(E164, "+1 (415) 555-0134"),
            ("14155550134".into(), "US", NumberType::FixedLineOrMobile)
        );
        assert_eq!(
            parsed(E164, "+49 30 123456"),
            ("4930123456".into(), "DE", NumberType::FixedLine)
        );
        assert_eq!(
            parsed(E164, "+86 135-1234-5678"),
            ("8613512345678".into(), "CN", NumberType::Mobile)
        );
        assert_eq!(
            parsed(E164, "+44 909 8790000"),
            ("449098790000".into(), "GB", NumberType::PremiumRate)
        );
        assert_eq!(
            parsed(E164, "+882 3421234").1,
            "ZZ",
            "international networks are non-geographic"
        );
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let cases = [
            ("(555) 123-4567", PhoneError::NotInternational),
            ("+1 555 CALL NOW", PhoneError::Characters),
            ("+44 7400 123456 ext. 12", PhoneError::Characters),
            ("+", PhoneError::NotANumber),
            ("+990 1234 5678", PhoneError::UnknownCountryCode),
            ("+44 7400 12", PhoneError::TooShort),
            ("+44 7400 1234567890", PhoneError::TooLong),
            ("+1 555 123 4567", PhoneError::Unassigned),
            ("+999 00 1234 5678", PhoneError::TestNumber),
            ("999 00 1234 5678", PhoneError::NotInternational),
        ];
        for (input, want) in cases {
            assert_eq!(E164.parse(input).map(|d| d.digits), Err(want), "{input}");
        }
        assert_eq!(
            E164.parse("+7 912 345 678 90").map(|d| d.digits),
            Err(PhoneError::ImpossibleLength),
            "Russian numbers have 10 or 14 national digits, never 11"
        );
    }

    #[test]
    fn a_default_region_reads_national_numbers() {
        let us = PhoneRules {
            default_region: Some("us".parse().unwrap()),
            test_numbers: false,
        };
        assert_eq!(
            parsed(us, "(415) 555-0134").0,
            "14155550134",
            "a local number in the default region"
        );
        assert_eq!(us.parse("(555) 123-4567"), Err(PhoneError::Unassigned));
        assert_eq!(
            parsed(us, "+44 7400 123456").1,
            "GB",
            "E.164 numbers keep their own country"
        );
        let gb = PhoneRules {
            default_region: Some("GB".parse().unwrap()),
            test_numbers: true,
        };
        assert_eq!(parsed(gb, "07400 123456").0, "447400123456");
        assert_eq!(
            parsed(gb, "+999 00 1234 5678").1,
            "XT",
            "test numbers keep working with a default region"
        );
    }

    #[test]
    fn test_numbers_pass_only_when_allowed() {
        let sandbox = PhoneRules {
            default_region: None,
            test_numbers: true,
        };
        assert_eq!(
            parsed(sandbox, "+999 00 1234 5678"),
            ("9990012345678".into(), "XT", NumberType::Mobile)
        );
        assert_eq!(
            sandbox.parse("999 00 1234 5678"),
            Err(PhoneError::NotInternational),
            "test numbers are E.164 too"
        );
        assert_eq!(parsed(sandbox, "+999 0012345").0, "9990012345");
        assert_eq!(sandbox.parse("+999 001234"), Err(PhoneError::TooShort));
        assert_eq!(
            sandbox.parse("+999 0012 3456 7890"),
            Err(PhoneError::TooLong)
        );
        assert_eq!(parsed(sandbox, "+44 7400 123456").1, "GB");
    }

    #[test]
    fn countries_parse_in_any_case_and_only_when_known() {
        assert_eq!("gb".parse::<Country>().unwrap().as_str(), "GB");
        assert_eq!(" US ".parse::<Country>().unwrap().to_string(), "US");
        assert_eq!("zz".parse::<Country>().unwrap(), NON_GEOGRAPHIC);
        assert_eq!("XT".parse::<Country>().unwrap(), TEST_COUNTRY);
        for bad in ["", "G", "GBR", "QQ", "12"] {
            assert!(bad.parse::<Country>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_number() {
        let d = E164.parse("+44 7400 123456").unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains("7400"), "{shown}");
        assert!(shown.contains("GB") && shown.contains("Mobile"), "{shown}");
    }
}
