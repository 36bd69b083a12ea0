//! The send guard's policy: the TOML file named by `GUARD_POLICY_FILE`, its defaults, and how
//! one send's rules are resolved (built-in defaults ← `[defaults]` ← `[apps."<app_id>"]` ←
//! `[callers.<name>]`, each level setting only the keys it names).
//!
//! ```toml
//! dry_run = false                                   # log and count, refuse nothing
//!
//! [defaults]
//! allowed_countries = []                            # empty: every country not denied
//! denied_countries = ["ZZ"]                         # ZZ: non-geographic numbers (+882, +881, …)
//! denied_number_types = ["premium_rate", "shared_cost", "toll_free", "uan", "voicemail", "pager"]
//! per_number = { sends = 5, window = "1h" }
//! per_prefix = { sends = 20, window = "1h", digits = 7 }
//! per_country = { sends = 1000, window = "1h" }     # sends = 0 turns a limit off
//! one_pending = true                                # a second send returns the pending one
//! pending_ttl = "1m"
//! max_check_attempts = 5                            # 0: no cap
//!
//! [apps."Xy12AbCd"]                                 # one ITNIO app
//! allowed_countries = ["GB", "IE"]
//!
//! [callers.checkout]                                # one caller of the callers file
//! per_country = { sends = 5000, window = "1h" }
//! ```

use std::{collections::HashMap, num::NonZeroU32, path::Path, time::Duration};

use serde::Deserialize;

use crate::phone::{Country, NON_GEOGRAPHIC, NumberType};

/// Number types refused by default: none of them is a phone a person reads a code on, and
/// premium and shared-cost ranges are where pumping earns its money.
pub const DEFAULT_DENIED_TYPES: [NumberType; 6] = [
    NumberType::PremiumRate,
    NumberType::SharedCost,
    NumberType::TollFree,
    NumberType::Uan,
    NumberType::Voicemail,
    NumberType::Pager,
];

/// A velocity limit: at most `sends` in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Sends allowed per window.
    pub sends: NonZeroU32,
    /// The sliding window.
    pub window: Duration,
}

/// The rules one send is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Only these countries, when not empty.
    pub allowed_countries: Vec<Country>,
    /// Never these countries.
    pub denied_countries: Vec<Country>,
    /// Never these number types.
    pub denied_number_types: Vec<NumberType>,
    /// Sends to one number.
    pub per_number: Option<Limit>,
    /// Sends to one prefix of [`Rules::prefix_digits`] digits (country code included).
    pub per_prefix: Option<Limit>,
    /// Digits of the E.164 number that make its prefix.
    pub prefix_digits: usize,
    /// Sends to one country.
    pub per_country: Option<Limit>,
    /// One verification in flight per number and app.
    pub one_pending: bool,
    /// How long a verification counts as pending when no check settles it first.
    pub pending_ttl: Duration,
    /// Checks of one verification before CheckVerification refuses; `None`: no cap.
    pub max_check_attempts: Option<NonZeroU32>,
}

const HOUR: Duration = Duration::from_secs(60 * 60);

fn limit(sends: u32, window: Duration) -> Option<Limit> {
    NonZeroU32::new(sends).map(|sends| Limit { sends, window })
}

impl Default for Rules {
    /// What runs with no policy file: see the module docs and `docs/guard.md`.
    fn default() -> Self {
        Self {
            allowed_countries: Vec::new(),
            denied_countries: vec![NON_GEOGRAPHIC],
            denied_number_types: DEFAULT_DENIED_TYPES.to_vec(),
            per_number: limit(5, HOUR),
            per_prefix: limit(20, HOUR),
            prefix_digits: 7,
            per_country: limit(1000, HOUR),
            one_pending: true,
            pending_ttl: Duration::from_secs(60),
            max_check_attempts: NonZeroU32::new(5),
        }
    }
}

/// The whole policy: defaults and the overrides per app and per caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Log and count refusals without refusing.
    pub dry_run: bool,
    defaults: Rules,
    apps: HashMap<String, RulesPatch>,
    callers: HashMap<String, RulesPatch>,
}

/// Why a policy file was refused (before anything listens).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read GUARD_POLICY_FILE {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("GUARD_POLICY_FILE {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the key.
        message: String,
    },
}

impl Policy {
    /// Reads and checks the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a policy from TOML text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut defaults = Rules::default();
        file.defaults.check("defaults")?;
        file.defaults.apply(&mut defaults);
        for (name, patch) in &file.apps {
            patch.check(&format!("apps.{name}"))?;
        }
        for (name, patch) in &file.callers {
            patch.check(&format!("callers.{name}"))?;
        }
        Ok(Self {
            dry_run: file.dry_run,
            defaults,
            apps: file.apps,
            callers: file.callers,
        })
    }

    /// The same policy in dry-run mode (`GUARD_DRY_RUN`).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run |= dry_run;
        self
    }

    /// The rules of a send on `app_id` by `caller`: the caller's overrides win over the app's.
    pub fn rules(&self, app_id: &str, caller: &str) -> Rules {
        let mut rules = self.defaults.clone();
        if let Some(patch) = self.apps.get(app_id) {
            patch.apply(&mut rules);
        }
        if let Some(patch) = self.callers.get(caller) {
            patch.apply(&mut rules);
        }
        rules
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    defaults: RulesPatch,
    #[serde(default)]
    apps: HashMap<String, RulesPatch>,
    #[serde(default)]
    callers: HashMap<String, RulesPatch>,
}

/// One level of the policy: only the keys it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesPatch {
    allowed_countries: Option<Vec<Country>>,
    denied_countries: Option<Vec<Country>>,
    denied_number_types: Option<Vec<NumberType>>,
    per_number: Option<LimitSpec>,
    per_prefix: Option<PrefixLimitSpec>,
    per_country: Option<LimitSpec>,
    one_pending: Option<bool>,
    pending_ttl: Option<DurationSpec>,
    max_check_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSpec {
    sends: u32,
    window: DurationSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixLimitSpec {
    sends: u32,
    window: DurationSpec,
    digits: Option<usize>,
}

/// A duration written like `"90s"`, `"10m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurationSpec(Duration);

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration: {e}")))
    }
}

impl LimitSpec {
    fn limit(self) -> Option<Limit> {
        limit(self.sends, self.window.0)
    }
}

impl RulesPatch {
    /// Checks what serde cannot: windows and TTLs above zero, a prefix of 1–15 digits.
    fn check(&self, section: &str) -> Result<(), String> {
        let windows = [
            ("per_number", self.per_number.map(|l| l.window)),
            ("per_prefix", self.per_prefix.map(|l| l.window)),
            ("per_country", self.per_country.map(|l| l.window)),
            ("pending_ttl", self.pending_ttl),
        ];
        for (key, window) in windows {
            if window.is_some_and(|w| w.0.is_zero()) {
                return Err(format!("{section}.{key}: the duration must be above zero"));
            }
        }
        if let Some(digits) = self.per_prefix.and_then(|p| p.digits)
            && !(1..=15).contains(&digits)
        {
            return Err(format!("{section}.per_prefix.digits must be 1–15"));
        }
        Ok(())
    }

    fn apply(&self, rules: &mut Rules) {
        if let Some(countries) = &self.allowed_countries {
            rules.allowed_countries.clone_from(countries);
        }
        if let Some(countries) = &self.denied_countries {
            rules.denied_countries.clone_from(countries);
        }
        if let Some(types) = &self.denied_number_types {
            rules.denied_number_types.clone_from(types);
        }
        if let Some(spec) = self.per_number {
            rules.per_number = spec.limit();
        }
        if let Some(spec) = self.per_prefix {
            rules.per_prefix = limit(spec.sends, spec.window.0);
            rules.prefix_digits = spec.digits.unwrap_or(rules.prefix_digits);
        }
        if let Some(spec) = self.per_country {
            rules.per_country = spec.limit();
        }
        if let Some(one_pending) = self.one_pending {
            rules.one_pending = one_pending;
        }
        if let Some(ttl) = self.pending_ttl {
            rules.pending_ttl = ttl.0;
        }
        if let Some(max) = self.max_check_attempts {
            rules.max_check_attempts = NonZeroU32::new(max);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn country(code: &str) -> Country {
        code.parse().unwrap()
    }

    #[test]
    fn no_file_means_the_documented_defaults() {
        let rules = Policy::default().rules("any-app", "anyone");
        assert_eq!(rules, Rules::default());
        assert!(rules.allowed_countries.is_empty());
        assert_eq!(rules.denied_countries, [NON_GEOGRAPHIC]);
        assert_eq!(rules.denied_number_types, DEFAULT_DENIED_TYPES);
        assert!(rules.denied_number_types.contains(&NumberType::PremiumRate));
        assert!(!rules.denied_number_types.contains(&NumberType::Mobile));
        assert_eq!(rules.per_number, limit(5, HOUR));
        // The documented windows are one hour, whatever HOUR is made of.
        assert_eq!(
            rules.per_number.map(|l| l.window),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(rules.per_prefix, limit(20, HOUR));
        assert_eq!(rules.prefix_digits, 7);
        assert_eq!(rules.per_country, limit(1000, HOUR));
        assert!(rules.one_pending);
        assert_eq!(rules.pending_ttl, Duration::from_secs(60));
        assert_eq!(rules.max_check_attempts.map(NonZeroU32::get), Some(5));
        assert!(!Policy::default().dry_run);
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
    }

    #[test]
    fn apps_override_defaults_and_callers_override_apps() {
        let policy = Policy::parse(
            r#"
            dry_run = true
            [defaults]
            per_number = { sends = 3, window = "10m" }
            max_check_attempts = 0
            [apps.shop1234]
            allowed_countries = ["gb", "IE"]
            per_prefix = { sends = 50, window = "30m", digits = 6 }
            [callers.checkout]
            per_prefix = { sends = 0, window = "1m" }
            denied_number_types = []
            one_pending = false
            pending_ttl = "2m"
            per_country = { sends = 0, window = "1h" }
            "#,
        )
        .unwrap();
        assert!(policy.dry_run);
        let other = policy.rules("other", "billing");
        assert_eq!(other.per_number, limit(3, Duration::from_secs(600)));
        assert_eq!(other.max_check_attempts, None);
        assert!(other.allowed_countries.is_empty());
        let app = policy.rules("shop1234", "billing");
        assert_eq!(app.allowed_countries, [country("GB"), country("IE")]);
        assert_eq!(app.per_prefix, limit(50, Duration::from_secs(1800)));
        assert_eq!(app.prefix_digits, 6);
        assert_eq!(app.per_number, other.per_number, "kept from [defaults]");
        let caller = policy.rules("shop1234", "checkout");
        assert_eq!(caller.allowed_countries, app.allowed_countries);
        assert_eq!(caller.per_prefix, None, "sends = 0 turns a limit off");
        assert_eq!(caller.prefix_digits, 6);
        assert_eq!(caller.per_country, None);
        assert!(caller.denied_number_types.is_empty());
        assert!(!caller.one_pending);
        assert_eq!(caller.pending_ttl, Duration::from_secs(120));
        assert_eq!(policy.rules("other", "checkout").prefix_digits, 7);
    }

    #[test]
    fn dry_run_comes_from_the_file_or_the_environment() {
        assert!(Policy::default().with_dry_run(true).dry_run);
        assert!(!Policy::default().with_dry_run(false).dry_run);
        let file = Policy::parse("dry_run = true").unwrap();
        assert!(file.with_dry_run(false).dry_run);
    }

    #[test]
    fn bad_policies_name_what_is_wrong() {
        let cases = [
            ("[defaults]\nallowed_countries = [\"GBR\"]", "GBR"),
            ("[defaults]\ndenied_number_types = [\"premium\"]", "premium"),
            ("[defaults]\nper_number = { sends = 5 }", "window"),
            (
                "[defaults]\nper_number = { sends = 5, window = \"soon\" }",
                "soon",
            ),
            (
                "[apps.a]\nper_country = { sends = 5, window = \"0s\" }",
                "apps.a.per_country",
            ),
            (
                "[callers.c]\nper_prefix = { sends = 5, window = \"1h\", digits = 16 }",
                "callers.c.per_prefix.digits",
            ),
            ("[callers.c]\npending_ttl = \"0s\"", "callers.c.pending_ttl"),
            ("[defaults]\nper_numbers = 1", "per_numbers"),
            ("dryrun = true", "dryrun"),
        ];
        for (text, named) in cases {
            let error = Policy::parse(text).unwrap_err();
            assert!(error.contains(named), "{text:?}: {error}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let missing = Policy::load(Path::new("/nonexistent/guard.toml")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/guard.toml"));
        let dir = std::env::temp_dir().join(format!("guard-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[defaults]\nmax_check_attempts = \"five\"").unwrap();
        let invalid = Policy::load(&path).unwrap_err().to_string();
        assert!(invalid.contains("bad.toml"), "{invalid}");
        std::fs::write(&path, "[defaults]\nmax_check_attempts = 3").unwrap();
        let loaded = Policy::load(&path).unwrap();
        assert_eq!(
            loaded.rules("a", "b").max_check_attempts,
            NonZeroU32::new(3)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
