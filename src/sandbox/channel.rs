//! Delivery channels: `sms`, `call`, and `sna` (send endpoints only; flow nodes take sms/call).

use serde::{Serialize, Serializer};

use super::envelope::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Call,
    Sna,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Call => "call",
            Self::Sna => "sna",
        }
    }

    /// A send channel: `sms` when absent, else one of sms/call/sna.
    pub fn for_send(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("sms") => Ok(Self::Sms),
            Some("call") => Ok(Self::Call),
            Some("sna") => Ok(Self::Sna),
            Some(other) => Err(ApiError::parameter(format!(
                "channel {other:?} is not sms/call/sna"
            ))),
        }
    }

    /// A flow-node channel: sms or call, required.
    pub fn for_flow(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            Some("sms") => Ok(Self::Sms),
            Some("call") => Ok(Self::Call),
            other => Err(ApiError::parameter(format!(
                "flow channel {other:?} is not sms/call"
            ))),
        }
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_values() {
        assert_eq!(Channel::for_send(None), Ok(Channel::Sms));
        assert_eq!(Channel::for_send(Some("sna")), Ok(Channel::Sna));
        assert!(Channel::for_send(Some("fax")).is_err());
        assert!(Channel::for_flow(Some("sna")).is_err());
        assert!(Channel::for_flow(None).is_err());
    }
}
