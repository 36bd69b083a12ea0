//! The gRPC services: one thin adapter per file — take the request, convert and validate it,
//! make the one upstream call it stands for, convert the reply.

pub mod apps;
pub mod flows;
pub mod records;
pub mod templates;
pub mod verifications;

use std::time::Duration;

use tonic::Request;

/// The longest head start the upstream timeout takes on the caller's deadline (a tenth of the
/// deadline below that). 50 ms was too little on a busy machine: our reply lost the race against
/// the caller's own timer, which then saw a bare CANCELLED.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The time the upstream call may take, from the caller's `grpc-timeout`: a little less than
/// the caller's deadline, so the caller gets our `DEADLINE_EXCEEDED` with details rather than
/// tonic's bare `CANCELLED` when the deadline itself fires.
pub fn deadline<T>(request: &Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let remaining = parse_grpc_timeout(value)?;
    Some(remaining.saturating_sub(MAX_DEADLINE_MARGIN.min(remaining / 10)))
}

/// Parses the gRPC wire format: 1–8 ASCII digits and a unit (H, M, S, m, u, n). Works on
/// bytes, so a multi-byte last character is refused rather than split.
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (&unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse_grpc_timeout("0n"), Some(Duration::ZERO));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in [
            "10x",
            "123456789S",
            "",
            "S",
            "5",
            "+5S",
            "-5S",
            " 5S",
            "5 S",
            "٥S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        // A multi-byte last character used to be split in the middle by `str::split_at` (a
        // panic; header values are ASCII, but the parser is a fuzz entry point of its own).
        for multi_byte in ["1é", "12€", "1😀"] {
            assert_eq!(parse_grpc_timeout(multi_byte), None, "{multi_byte:?}");
        }
    }

    #[test]
    fn deadline_comes_from_metadata() {
        let mut request = Request::new(());
        assert_eq!(deadline(&request), None);
        for (caller, upstream) in [(300, 270), (1500, 1350), (10_000, 9750)] {
            request.set_timeout(Duration::from_millis(caller));
            assert_eq!(
                deadline(&request),
                Some(Duration::from_millis(upstream)),
                "caller deadline {caller} ms"
            );
        }
    }
}
