//! The ITNIO OTP global status codes (API doc §5), with their EN description text.
//!
//! The wire carries the code as a string (`"-27"`) or sometimes a number; the client turns it into
//! an `i32` and this module gives it a name. Codes not in the documented table map to
//! [`UpstreamStatus::Unknown`], which keeps the raw code so nothing is lost.

use std::fmt;

/// A documented envelope `status`, or `Unknown(code)` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamStatus {
    /// `0`
    Success,
    /// `-1`
    AuthenticationError,
    /// `-2`
    IpRestricted,
    /// `-10`
    BalanceInsufficient,
    /// `-16`: the only retry-safe rejection (nothing was processed).
    TimestampExpired,
    /// `-18`
    SystemError,
    /// `-20`
    DataExists,
    /// `-21`
    DataValidation,
    /// `-22`
    ParameterError,
    /// `-23`
    DataCap,
    /// `-24`
    DataNotFound,
    /// `-25`
    OutOfTimeRange,
    /// `-26`
    RateUnavailable,
    /// `-27`
    PeriodTotalLimit,
    /// `-28`
    PeriodPhoneLimit,
    /// `-29`
    SensitiveWords,
    /// Any code the documentation does not list.
    Unknown(i32),
}

impl UpstreamStatus {
    /// Every documented code, in table order (handy for emulators and exhaustive tests).
    pub const DOCUMENTED: [UpstreamStatus; 16] = [
        Self::Success,
        Self::AuthenticationError,
        Self::IpRestricted,
        Self::BalanceInsufficient,
        Self::TimestampExpired,
        Self::SystemError,
        Self::DataExists,
        Self::DataValidation,
        Self::ParameterError,
        Self::DataCap,
        Self::DataNotFound,
        Self::OutOfTimeRange,
        Self::RateUnavailable,
        Self::PeriodTotalLimit,
        Self::PeriodPhoneLimit,
        Self::SensitiveWords,
    ];

    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Success,
            -1 => Self::AuthenticationError,
            -2 => Self::IpRestricted,
            -10 => Self::BalanceInsufficient,
            -16 => Self::TimestampExpired,
            -18 => Self::SystemError,
            -20 => Self::DataExists,
            -21 => Self::DataValidation,
            -22 => Self::ParameterError,
            -23 => Self::DataCap,
            -24 => Self::DataNotFound,
            -25 => Self::OutOfTimeRange,
            -26 => Self::RateUnavailable,
            -27 => Self::PeriodTotalLimit,
            -28 => Self::PeriodPhoneLimit,
            -29 => Self::SensitiveWords,
            other => Self::Unknown(other),
        }
    }

    pub fn code(&self) -> i32 {
        match self {
            Self::Success => 0,
            Self::AuthenticationError => -1,
            Self::IpRestricted => -2,
            Self::BalanceInsufficient => -10,
            Self::TimestampExpired => -16,
            Self::SystemError => -18,
            Self::DataExists => -20,
            Self::DataValidation => -21,
            Self::ParameterError => -22,
            Self::DataCap => -23,
            Self::DataNotFound => -24,
            Self::OutOfTimeRange => -25,
            Self::RateUnavailable => -26,
            Self::PeriodTotalLimit => -27,
            Self::PeriodPhoneLimit => -28,
            Self::SensitiveWords => -29,
            Self::Unknown(code) => *code,
        }
    }

    /// Stable UPPER_SNAKE name, suitable for `ErrorInfo.reason` and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::AuthenticationError => "AUTHENTICATION_ERROR",
            Self::IpRestricted => "IP_RESTRICTED",
            Self::BalanceInsufficient => "BALANCE_INSUFFICIENT",
            Self::TimestampExpired => "TIMESTAMP_EXPIRED",
            Self::SystemError => "SYSTEM_ERROR",
            Self::DataExists => "DATA_EXISTS",
            Self::DataValidation => "DATA_VALIDATION",
            Self::ParameterError => "PARAMETER_ERROR",
            Self::DataCap => "DATA_CAP",
            Self::DataNotFound => "DATA_NOT_FOUND",
            Self::OutOfTimeRange => "OUT_OF_TIME_RANGE",
            Self::RateUnavailable => "RATE_UNAVAILABLE",
            Self::PeriodTotalLimit => "PERIOD_TOTAL_LIMIT",
            Self::PeriodPhoneLimit => "PERIOD_PHONE_LIMIT",
            Self::SensitiveWords => "SENSITIVE_WORDS",
            Self::Unknown(_) => "UNKNOWN",
        }
    }

    /// The EN text of the documented status table (§5), verbatim.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::AuthenticationError => "Authentication error",
            Self::IpRestricted => "Restricted IP access",
            Self::BalanceInsufficient => "The customer's balance is insufficient",
            Self::TimestampExpired => "Timestamp expires",
            Self::SystemError => "Port program unusual",
            Self::DataExists => "Data existing",
            Self::DataValidation => "Data validation exception",
            Self::ParameterError => "Parameter exception",
            Self::DataCap => "Data caps",
            Self::DataNotFound => "Data unexisting",
            Self::OutOfTimeRange => "Out of time range",
            Self::RateUnavailable => "Getting fee fail",
            Self::PeriodTotalLimit => "Period total send limit",
            Self::PeriodPhoneLimit => "Period phone send limit",
            Self::SensitiveWords => "SMS content has sensitive words",
            Self::Unknown(_) => "Unknown status code",
        }
    }
}

impl From<i32> for UpstreamStatus {
    fn from(code: i32) -> Self {
        Self::from_code(code)
    }
}

impl fmt::Display for UpstreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_codes_round_trip() {
        for status in UpstreamStatus::DOCUMENTED {
            assert_eq!(UpstreamStatus::from_code(status.code()), status);
            assert_ne!(status.name(), "UNKNOWN");
        }
    }

    #[test]
    fn names_and_descriptions() {
        let s = UpstreamStatus::from_code(-16);
        assert_eq!(s, UpstreamStatus::TimestampExpired);
        assert_eq!(s.name(), "TIMESTAMP_EXPIRED");
        assert_eq!(s.description(), "Timestamp expires");
        assert_eq!(UpstreamStatus::from_code(-27).name(), "PERIOD_TOTAL_LIMIT");
        assert_eq!(
            UpstreamStatus::from_code(-10).name(),
            "BALANCE_INSUFFICIENT"
        );
    }

    #[test]
    fn unknown_keeps_the_code() {
        let s = UpstreamStatus::from_code(-99);
        assert_eq!(s, UpstreamStatus::Unknown(-99));
        assert_eq!(s.code(), -99);
        assert_eq!(s.name(), "UNKNOWN");
        assert_eq!(s.to_string(), "UNKNOWN (-99)");
    }
}
