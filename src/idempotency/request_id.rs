//! The caller's `request_id` (AIP-155): a UUID that names one logical send across retries.

use std::fmt;

/// A validated request id, in lowercase hyphenated form so `ABC…` and `abc…` are one id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// `Ok(None)` for an absent id (no deduplication), the id when it is a UUID, else a
    /// description for a field violation (which never echoes the value).
    pub fn parse(value: &str) -> Result<Option<Self>, &'static str> {
        if value.is_empty() {
            return Ok(None);
        }
        match uuid::Uuid::try_parse(value) {
            Ok(id) if value.len() == uuid::fmt::Hyphenated::LENGTH && !id.is_nil() => {
                Ok(Some(Self(id.hyphenated().to_string())))
            }
            _ => Err("must be a UUID such as 123e4567-e89b-12d3-a456-426614174000"),
        }
    }

    /// The canonical text of the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_accepted_and_normalised() {
        let id = RequestId::parse("123E4567-E89B-12D3-A456-426614174000")
            .expect("valid")
            .expect("present");
        assert_eq!(id.as_str(), "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!(RequestId::parse(""), Ok(None));
    }

    #[test]
    fn anything_else_is_a_violation() {
        for bad in [
            "not-a-uuid",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
            "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
            "00000000-0000-0000-0000-000000000000",
            " 123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(RequestId::parse(bad).is_err(), "{bad}");
        }
    }
}
