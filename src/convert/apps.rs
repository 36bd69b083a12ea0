//! Applications: `CreateApp`/`UpdateApp` requests to `/app/*` bodies, and the app reply back.

use crate::{
    proto::v1::{self as pb, LimitUnit},
    upstream as wire,
};

use super::{InvalidRequest, Violations, limits::NAME_CHARS, timestamp_from_wire};

/// The documented `limit` ceiling: 10 billion ("1-100亿").
const MAX_LIMIT: i64 = 10_000_000_000;

/// Checks a `CreateApp` request and builds the `/app/add` body.
pub fn create_request(req: &pb::CreateAppRequest) -> Result<wire::AppRequest, InvalidRequest> {
    let mut v = Violations::default();
    let body = app_body(
        &mut v,
        None,
        &req.name,
        req.code_expiry_minutes,
        [&req.period_total_send_limit, &req.period_phone_send_limit],
    );
    v.finish(body)
}

/// Checks an `UpdateApp` request and builds the `/app/update/{appId}` body.
pub fn update_request(req: &pb::UpdateAppRequest) -> Result<wire::AppRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.app_id("app_id", &req.app_id);
    let body = app_body(
        &mut v,
        Some(req.app_id.clone()),
        &req.name,
        req.code_expiry_minutes,
        [&req.period_total_send_limit, &req.period_phone_send_limit],
    );
    v.finish(body)
}

/// Checks a `GetApp` request.
pub fn get_request(req: &pb::GetAppRequest) -> Result<(), InvalidRequest> {
    let mut v = Violations::default();
    v.app_id("app_id", &req.app_id);
    v.finish(())
}

fn app_body(
    v: &mut Violations,
    app_id: Option<String>,
    name: &str,
    code_expiry: Option<i32>,
    [total, phone]: [&Option<pb::PeriodLimit>; 2],
) -> wire::AppRequest {
    v.text("name", name, NAME_CHARS);
    v.range("code_expiry_minutes", code_expiry, 1..=60);
    wire::AppRequest {
        app_id,
        name: name.to_owned(),
        code_expiry,
        period_total_send_limit: Some(limit_to_wire(v, "period_total_send_limit", total)),
        period_phone_send_limit: Some(limit_to_wire(v, "period_phone_send_limit", phone)),
    }
}

/// A limit; disabled (or absent) limits are sent with null sub-fields, as the docs' sample does.
fn limit_to_wire(
    v: &mut Violations,
    field: &str,
    limit: &Option<pb::PeriodLimit>,
) -> wire::PeriodLimit {
    let Some(limit) = limit.as_ref().filter(|l| l.enabled) else {
        return wire::PeriodLimit::default();
    };
    let unit = match LimitUnit::try_from(limit.unit) {
        Ok(LimitUnit::Unspecified) => {
            v.add(
                format!("{field}.unit"),
                "is required when the limit is enabled",
            );
            None
        }
        Ok(unit) => Some(unit as i32),
        Err(_) => {
            v.add(
                format!("{field}.unit"),
                "must be DAY, HOUR, MINUTE or SECOND",
            );
            None
        }
    };
    if limit.period == 0 {
        v.add(
            format!("{field}.period"),
            "is required when the limit is enabled",
        );
    } else {
        v.range(&format!("{field}.period"), Some(limit.period), 1..=90);
    }
    if limit.limit == 0 {
        v.add(
            format!("{field}.limit"),
            "is required when the limit is enabled",
        );
    } else {
        v.range(&format!("{field}.limit"), Some(limit.limit), 1..=MAX_LIMIT);
    }
    wire::PeriodLimit {
        enabled: true,
        unit,
        period: Some(limit.period),
        limit: Some(limit.limit),
    }
}

/// The upstream app as proto.
pub fn from_wire(app: wire::App) -> pb::App {
    pb::App {
        app_id: app.app_id,
        name: app.name,
        code_expiry_minutes: app.code_expiry.unwrap_or_default(),
        period_total_send_limit: app.period_total_send_limit.map(limit_from_wire),
        period_phone_send_limit: app.period_phone_send_limit.map(limit_from_wire),
        create_time: timestamp_from_wire(app.create_time.as_deref()),
    }
}

fn limit_from_wire(limit: wire::PeriodLimit) -> pb::PeriodLimit {
    pb::PeriodLimit {
        enabled: limit.enabled,
        unit: limit
            .unit
            .and_then(|u| LimitUnit::try_from(u).ok())
            .unwrap_or(LimitUnit::Unspecified) as i32,
        period: limit.period.unwrap_or_default(),
        limit: limit.limit.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::tests::fields;

    #[test]
    fn valid_create_builds_the_documented_body() {
        let body = create_request(&pb::CreateAppRequest {
            name: "test_app".into(),
            code_expiry_minutes: Some(5),
            period_total_send_limit: Some(pb::PeriodLimit {
                enabled: true,
                unit: LimitUnit::Day as i32,
                period: 1,
                limit: MAX_LIMIT,
            }),
            period_phone_send_limit: None,
        })
        .expect("valid");
        let total = body.period_total_send_limit.expect("sent");
        assert_eq!(
            (total.unit, total.period, total.limit),
            (Some(1), Some(1), Some(MAX_LIMIT))
        );
        assert!(!body.period_phone_send_limit.expect("sent").enabled);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let err = create_request(&pb::CreateAppRequest {
            name: "abc".into(),
            code_expiry_minutes: Some(0),
            period_total_send_limit: Some(pb::PeriodLimit {
                enabled: true,
                unit: 0,
                period: 91,
                limit: MAX_LIMIT + 1,
            }),
            period_phone_send_limit: Some(pb::PeriodLimit {
                enabled: true,
                unit: 7,
                period: 0,
                limit: 0,
            }),
        })
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "name",
                "code_expiry_minutes",
                "period_total_send_limit.unit",
                "period_total_send_limit.period",
                "period_total_send_limit.limit",
                "period_phone_send_limit.unit",
                "period_phone_send_limit.period",
                "period_phone_send_limit.limit",
            ]
        );
    }

    #[test]
    fn update_requires_app_id() {
        let err = update_request(&pb::UpdateAppRequest {
            name: "good name".into(),
            ..Default::default()
        })
        .expect_err("invalid");
        assert_eq!(fields(err), ["app_id"]);
    }

    #[test]
    fn app_ids_are_checked_by_shape() {
        for bad in [
            "abc",
            "mRELxtHc\n",
            "mREL xtHc",
            "mREL/xtHc",
            "..",
            &"a".repeat(33),
        ] {
            let err = get_request(&pb::GetAppRequest { app_id: bad.into() }).expect_err(bad);
            assert_eq!(fields(err), ["app_id"], "{bad:?}");
        }
        for ok in ["abcd", "mRELxtHc", "app-id_01", &"a".repeat(32)] {
            get_request(&pb::GetAppRequest { app_id: ok.into() }).expect(ok);
        }
        let err = update_request(&pb::UpdateAppRequest {
            app_id: "mRELxtHc".into(),
            name: "na\u{202D}me".into(),
            ..Default::default()
        })
        .expect_err("bidi override");
        assert_eq!(fields(err), ["name"]);
    }
}
