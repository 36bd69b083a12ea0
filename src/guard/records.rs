//! What the guard keeps per verification in the shared store, as JSON: the pending send of a
//! number and app (returned instead of sending again), and the facts resends and checks need.
//! Neither holds the phone number in clear beyond what the send's own response carries.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    hex::lower_hex,
    phone::{Country, NON_GEOGRAPHIC, NumberType},
};

/// A send's response, as returned again while it is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSend {
    /// The verification.
    pub verification_id: String,
    /// The digits ITNIO reported.
    pub phone_number: String,
    /// The proto channel.
    pub channel: i32,
    /// SNA URL, if any.
    pub sna_url: String,
    /// The send's order id.
    pub order_id: String,
}

/// The pending verification of one number and app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// What the send answered.
    pub send: PendingSend,
    /// For SendCustomCode: a digest of the code salted with the verification id, so only a
    /// send of the same code is answered with this verification.
    code_digest: Option<String>,
}

impl PendingRecord {
    /// The record of `send`, which delivered `custom_code` if it was a SendCustomCode.
    pub fn new(send: PendingSend, custom_code: Option<&str>) -> Self {
        let code_digest = custom_code.map(|code| digest(&send.verification_id, code));
        Self { send, code_digest }
    }

    /// Whether a send of `custom_code` (None: a generated code) is answered by this one.
    pub fn same_code(&self, custom_code: Option<&str>) -> bool {
        match (&self.code_digest, custom_code) {
            (None, None) => true,
            (Some(stored), Some(code)) => *stored == digest(&self.send.verification_id, code),
            _ => false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What the guard knows of a verification it let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// Its app.
    pub app_id: String,
    /// Hash of its number (the per-number counter's key).
    pub number: String,
    /// Its number's prefix (the per-prefix counter's key).
    pub prefix: String,
    /// Its country.
    pub country: String,
    /// Its number type.
    pub number_type: NumberType,
    /// Whether it is (or was) the pending verification of its number and app.
    pub pending: bool,
}

impl VerificationRecord {
    /// The country, `ZZ` if unreadable.
    pub fn country(&self) -> Country {
        self.country.parse().unwrap_or(NON_GEOGRAPHIC)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

fn digest(verification_id: &str, code: &str) -> String {
    let digest = Sha256::new()
        .chain_update(verification_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(code.as_bytes())
        .finalize();
    lower_hex(&digest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn send() -> PendingSend {
        PendingSend {
            verification_id: "22611231955000000001".into(),
            phone_number: "447400123456".into(),
            channel: 1,
            sna_url: String::new(),
            order_id: "o-1".into(),
        }
    }

    #[test]
    fn custom_codes_match_only_the_same_code() {
        let generated = PendingRecord::new(send(), None);
        assert!(generated.same_code(None));
        assert!(!generated.same_code(Some("1234")));
        let custom = PendingRecord::new(send(), Some("1234"));
        assert!(custom.same_code(Some("1234")));
        assert!(!custom.same_code(Some("4321")));
        assert!(!custom.same_code(None));
        let bytes = custom.encode();
        assert!(!String::from_utf8_lossy(&bytes).contains("1234\""));
        assert_eq!(PendingRecord::decode(&bytes).unwrap(), custom);
        assert_eq!(PendingRecord::decode(b"not json"), None);
    }

    #[test]
    fn verification_records_round_trip() {
        let record = VerificationRecord {
            app_id: "app1".into(),
            number: "abc".into(),
            prefix: "4474001".into(),
            country: "GB".into(),
            number_type: NumberType::Mobile,
            pending: true,
        };
        assert_eq!(
            VerificationRecord::decode(&record.encode()).unwrap(),
            record
        );
        assert_eq!(record.country().as_str(), "GB");
        let unreadable = VerificationRecord {
            country: "??".into(),
            ..record
        };
        assert_eq!(unreadable.country(), NON_GEOGRAPHIC);
    }
}
