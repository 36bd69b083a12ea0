//! Request signing: `Sign = lowercase hex MD5(apiKey + apiSecret + Timestamp)` (API doc §3).
//!
//! Neither the body nor the path is signed, so the only thing that makes a signature go stale is
//! the timestamp; the client re-signs every attempt with a fresh one.

use md5::{Digest, Md5};

use crate::hex::lower_hex;

/// Returns the 32-character lowercase hex signature for one request.
pub fn sign(api_key: &str, api_secret: &str, timestamp: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(api_key.as_bytes());
    hasher.update(api_secret.as_bytes());
    hasher.update(timestamp.as_bytes());
    lower_hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_documented_example() {
        assert_eq!(
            sign("bDqJFiq9", "7bz1lzh9", "1630468800"),
            "05d7a50893e22a5c4bb3216ae3396c7c"
        );
    }

    #[test]
    fn is_plain_concatenation() {
        // Moving characters between the parts does not change the digest: no separators.
        assert_eq!(
            sign("bDqJFiq97bz1", "lzh9", "1630468800"),
            "05d7a50893e22a5c4bb3216ae3396c7c"
        );
        assert_eq!(sign("", "", "").len(), 32);
    }
}
