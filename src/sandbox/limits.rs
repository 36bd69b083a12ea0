//! Period send limits of an app (`periodTotalSendLimit` → -27, `periodPhoneSendLimit` → -28):
//! their wire shape, validation, and the sliding-window log of accepted sends. Windows use
//! real time and are not scaled by `speed`.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::envelope::ApiError;
use super::lenient::{self, opt_bool, opt_int};

/// A limit object as callers send it.
#[derive(Debug, Default, Deserialize)]
pub struct LimitIn {
    #[serde(default, deserialize_with = "opt_bool")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_int")]
    unit: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    period: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    limit: Option<i64>,
}

/// A validated limit, echoed back as given; a disabled limit keeps whatever sub-fields it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limit {
    unit: Option<i64>,
    period: Option<i64>,
    limit: Option<i64>,
    pub enabled: bool,
}

impl Limit {
    /// Validates an optional limit object; when enabled, unit 1–4, period 1–90 and
    /// limit 1–10 000 000 000 are all required.
    pub fn parse(field: &str, input: Option<LimitIn>) -> Result<Self, ApiError> {
        let input = input.unwrap_or_default();
        let enabled = input.enabled.unwrap_or(false);
        if enabled {
            lenient::required_ranged(&format!("{field}.unit"), input.unit, 1, 4)?;
            lenient::required_ranged(&format!("{field}.period"), input.period, 1, 90)?;
            lenient::required_ranged(&format!("{field}.limit"), input.limit, 1, 10_000_000_000)?;
        }
        Ok(Self {
            unit: input.unit,
            period: input.period,
            limit: input.limit,
            enabled,
        })
    }

    /// The sliding window and cap, when the limit is enabled.
    fn window(&self) -> Option<(Duration, usize)> {
        if !self.enabled {
            return None;
        }
        let unit = match self.unit? {
            1 => Duration::days(1),
            2 => Duration::hours(1),
            3 => Duration::minutes(1),
            _ => Duration::seconds(1),
        };
        let cap = usize::try_from(self.limit?).unwrap_or(usize::MAX);
        Some((unit * i32::try_from(self.period?).unwrap_or(90), cap))
    }
}

/// One accepted send.
#[derive(Debug, Clone)]
struct Sent {
    at: DateTime<Utc>,
    to: String,
}

/// The accepted sends of one app, oldest first.
#[derive(Debug, Default)]
pub struct SendLog(VecDeque<Sent>);

impl SendLog {
    /// Checks both limits for a send to `to` at `now`: the total first (-27), then the number (-28).
    pub fn check(
        &mut self,
        total: &Limit,
        phone: &Limit,
        to: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.forget_older_than(total, phone, now);
        if let Some((window, cap)) = total.window() {
            if self.count_since(now - window, |_| true) >= cap {
                return Err(ApiError::PeriodTotalSendLimit);
            }
        }
        if let Some((window, cap)) = phone.window() {
            if self.count_since(now - window, |sent| sent.to == to) >= cap {
                return Err(ApiError::PeriodPhoneSendLimit);
            }
        }
        Ok(())
    }

    /// Records an accepted send.
    pub fn push(&mut self, to: &str, now: DateTime<Utc>) {
        self.0.push_back(Sent {
            at: now,
            to: to.to_owned(),
        });
    }

    fn count_since(&self, since: DateTime<Utc>, matches: impl Fn(&Sent) -> bool) -> usize {
        self.0
            .iter()
            .rev()
            .take_while(|sent| sent.at > since)
            .filter(|sent| matches(sent))
            .count()
    }

    /// Keeps the log no longer than the longest window in force.
    fn forget_older_than(&mut self, total: &Limit, phone: &Limit, now: DateTime<Utc>) {
        let longest = [total.window(), phone.window()]
            .into_iter()
            .flatten()
            .map(|(w, _)| w)
            .max();
        let Some(longest) = longest else {
            self.0.clear();
            return;
        };
        while self.0.front().is_some_and(|sent| sent.at <= now - longest) {
            self.0.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limit(unit: i64, period: i64, cap: i64) -> Limit {
        Limit {
            unit: Some(unit),
            period: Some(period),
            limit: Some(cap),
            enabled: true,
        }
    }

    fn off() -> Limit {
        Limit::parse("x", None).unwrap()
    }

    #[test]
    fn enabled_limits_need_every_field() {
        let input = LimitIn {
            enabled: Some(true),
            unit: Some(1),
            period: None,
            limit: Some(1),
        };
        assert!(Limit::parse("x", Some(input)).is_err());
        let input = LimitIn {
            enabled: Some(true),
            unit: Some(5),
            period: Some(1),
            limit: Some(1),
        };
        assert!(Limit::parse("x", Some(input)).is_err());
        let input = LimitIn {
            enabled: Some(false),
            unit: None,
            period: None,
            limit: None,
        };
        assert!(Limit::parse("x", Some(input)).is_ok_and(|l| !l.enabled));
    }

    #[test]
    fn total_limit_slides() {
        let mut log = SendLog::default();
        let start = Utc::now();
        let total = limit(4, 2, 2);
        for i in 0..2 {
            assert_eq!(
                log.check(&total, &off(), "1", start + Duration::milliseconds(i)),
                Ok(())
            );
            log.push("1", start + Duration::milliseconds(i));
        }
        assert_eq!(
            log.check(&total, &off(), "2", start + Duration::seconds(1)),
            Err(ApiError::PeriodTotalSendLimit)
        );
        assert_eq!(
            log.check(&total, &off(), "2", start + Duration::seconds(3)),
            Ok(())
        );
    }

    #[test]
    fn phone_limit_counts_one_number() {
        let mut log = SendLog::default();
        let now = Utc::now();
        let phone = limit(1, 1, 1);
        log.push("111", now);
        assert_eq!(
            log.check(&off(), &phone, "111", now),
            Err(ApiError::PeriodPhoneSendLimit)
        );
        assert_eq!(log.check(&off(), &phone, "222", now), Ok(()));
    }

    #[test]
    fn each_unit_has_its_own_length() {
        let now = Utc::now();
        for (unit, length) in [
            (1, Duration::days(1)),
            (2, Duration::hours(1)),
            (3, Duration::minutes(1)),
            (4, Duration::seconds(1)),
        ] {
            let mut log = SendLog::default();
            let phone = limit(unit, 1, 1);
            log.push("111", now);
            let just_inside = now + length - Duration::milliseconds(1);
            assert_eq!(
                log.check(&off(), &phone, "111", just_inside),
                Err(ApiError::PeriodPhoneSendLimit),
                "unit {unit}"
            );
            assert_eq!(
                log.check(&off(), &phone, "111", now + length),
                Ok(()),
                "unit {unit}"
            );
        }
    }

    #[test]
    fn a_send_leaves_the_window_exactly_one_window_later() {
        let mut log = SendLog::default();
        let now = Utc::now();
        let total = limit(4, 1, 1);
        // A longer phone window keeps the send in the log past the total window.
        let phone = limit(4, 2, 10);
        log.push("111", now);
        assert_eq!(
            log.check(&total, &phone, "222", now + Duration::seconds(1)),
            Ok(())
        );
    }

    #[test]
    fn the_log_keeps_only_the_longest_window_in_force() {
        let mut log = SendLog::default();
        let now = Utc::now();
        for i in 0..3 {
            log.push("111", now + Duration::seconds(i));
        }
        let short = limit(4, 1, 10);
        let long = limit(4, 2, 10);
        assert_eq!(
            log.check(&short, &long, "111", now + Duration::milliseconds(2500)),
            Ok(())
        );
        assert_eq!(log.0.len(), 2, "the sends within the 2 s phone window stay");
        assert_eq!(
            log.check(&off(), &off(), "111", now + Duration::seconds(3)),
            Ok(())
        );
        assert_eq!(log.0.len(), 0, "no limit in force keeps nothing");
    }
}
