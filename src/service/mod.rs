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

/// Parses the gRPC wire format: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
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
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
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
