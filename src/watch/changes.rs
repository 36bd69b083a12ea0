//! What changed between two versions of a record, and when a record is final.

use crate::proto::v1::{DeliveryStatus, MatchState, Record, RecordChange};

/// The changes from `before` to `after`, in a stable order; empty when nothing changed.
pub fn between(before: &Record, after: &Record) -> Vec<RecordChange> {
    let mut changes = Vec::new();
    if after.sms_attempts.len() > before.sms_attempts.len()
        || after.call_attempts.len() > before.call_attempts.len()
    {
        changes.push(RecordChange::AttemptAdded);
    }
    let sms_updated = before
        .sms_attempts
        .iter()
        .zip(&after.sms_attempts)
        .any(|(a, b)| a != b);
    let call_updated = before
        .call_attempts
        .iter()
        .zip(&after.call_attempts)
        .any(|(a, b)| a != b);
    if sms_updated || call_updated {
        changes.push(RecordChange::AttemptUpdated);
    }
    let outcome = |r: &Record| r.outcome.as_ref().map(|o| (o.match_state, o.verified_time));
    if outcome(before) != outcome(after) {
        changes.push(RecordChange::MatchState);
    }
    if changes.is_empty() && before != after {
        // Some other field moved (e.g. a cost was filled in): still worth telling.
        changes.push(RecordChange::AttemptUpdated);
    }
    changes
}

/// The verification is settled by its match state: matched, used or expired.
pub fn is_settled(record: &Record) -> bool {
    let state = record
        .outcome
        .as_ref()
        .and_then(|o| MatchState::try_from(o.match_state).ok());
    matches!(
        state,
        Some(MatchState::Matched | MatchState::AlreadyUsed | MatchState::Expired)
    )
}

/// Every attempt so far has failed (and there is at least one).
pub fn all_attempts_failed(record: &Record) -> bool {
    let failed = DeliveryStatus::Failed as i32;
    let sms = record.sms_attempts.iter().map(|a| a.status);
    let calls = record.call_attempts.iter().map(|a| a.status);
    let mut statuses = sms.chain(calls).peekable();
    statuses.peek().is_some() && statuses.all(|status| status == failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{CallAttempt, SmsAttempt, VerificationOutcome};

    fn sms(status: DeliveryStatus) -> SmsAttempt {
        SmsAttempt {
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_named() {
        let before = Record {
            sms_attempts: vec![sms(DeliveryStatus::Sending)],
            ..Default::default()
        };
        let mut after = before.clone();
        assert!(between(&before, &after).is_empty());
        after.sms_attempts[0] = sms(DeliveryStatus::Failed);
        after.call_attempts.push(CallAttempt::default());
        after.outcome = Some(VerificationOutcome {
            match_state: MatchState::Matched as i32,
            ..Default::default()
        });
        assert_eq!(
            between(&before, &after),
            [
                RecordChange::AttemptAdded,
                RecordChange::AttemptUpdated,
                RecordChange::MatchState
            ]
        );
    }

    fn call(status: DeliveryStatus) -> CallAttempt {
        CallAttempt {
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_attempt_alone_is_an_addition_not_an_update() {
        let before = Record {
            sms_attempts: vec![sms(DeliveryStatus::Failed)],
            call_attempts: vec![call(DeliveryStatus::Failed)],
            ..Default::default()
        };
        let mut new_sms = before.clone();
        new_sms.sms_attempts.push(sms(DeliveryStatus::Sending));
        assert_eq!(between(&before, &new_sms), [RecordChange::AttemptAdded]);
        let mut new_call = before.clone();
        new_call.call_attempts.push(call(DeliveryStatus::Sending));
        assert_eq!(between(&before, &new_call), [RecordChange::AttemptAdded]);
    }

    #[test]
    fn a_changed_call_attempt_is_an_update() {
        let before = Record {
            sms_attempts: vec![sms(DeliveryStatus::Failed)],
            call_attempts: vec![call(DeliveryStatus::Sending)],
            ..Default::default()
        };
        let mut after = before.clone();
        after.call_attempts[0] = call(DeliveryStatus::Delivered);
        after.outcome = Some(VerificationOutcome {
            match_state: MatchState::Matched as i32,
            ..Default::default()
        });
        assert_eq!(
            between(&before, &after),
            [RecordChange::AttemptUpdated, RecordChange::MatchState]
        );
        let mut sms_only = before.clone();
        sms_only.sms_attempts[0] = sms(DeliveryStatus::Delivered);
        sms_only.outcome = after.outcome.clone();
        assert_eq!(
            between(&before, &sms_only),
            [RecordChange::AttemptUpdated, RecordChange::MatchState]
        );
    }

    #[test]
    fn another_field_moving_is_still_an_update() {
        let before = Record::default();
        let after = Record {
            order_id: "o-1".into(),
            ..Default::default()
        };
        assert_eq!(between(&before, &after), [RecordChange::AttemptUpdated]);
    }

    #[test]
    fn finality() {
        let mut record = Record::default();
        assert!(!all_attempts_failed(&record));
        record.sms_attempts = vec![sms(DeliveryStatus::Failed)];
        assert!(all_attempts_failed(&record));
        record.sms_attempts.push(sms(DeliveryStatus::Delivered));
        assert!(!all_attempts_failed(&record));
        assert!(!is_settled(&record));
        record.outcome = Some(VerificationOutcome {
            match_state: MatchState::Expired as i32,
            ..Default::default()
        });
        assert!(is_settled(&record));
    }
}
