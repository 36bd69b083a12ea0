//! Lowercase hex, two digits a byte: the request signature (`upstream::sign`) and the send
//! guard's hashed store keys and code digests are written with it.
//!
//! It sits at the bottom of the crate so the guard's Redis key format depends on no other
//! module: keys outlive a release (replicas of two versions share one Redis during a rolling
//! update), so the bytes this writes must never change.

/// `bytes` as lowercase hex, two digits a byte.
pub fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lowercase_digits_a_byte_high_nibble_first() {
        assert_eq!(lower_hex(&[]), "");
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
    }
}
