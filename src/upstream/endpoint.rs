//! The 19 ITNIO OTP routes as a `Copy` value: method, fixed path and whether an id follows.
//!
//! Errors and logs name the *route template* (`GET /verification/record/{verificationId}`), never
//! the concrete URL, because path ids can be phone-number-like or verification ids.

use std::fmt;

use reqwest::Method;

/// One documented route of the ITNIO OTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    AppAdd,
    AppUpdate,
    AppDetails,
    TemplateAdd,
    TemplateUpdate,
    TemplateDetails,
    TemplateList,
    VerificationSend,
    VerificationSendRule,
    VerificationResend,
    VerificationVerify,
    VerificationRecord,
    VerificationOrderIdRecord,
    FlowAdd,
    FlowUpdate,
    FlowDetails,
    FlowList,
    BackfillRate,
    PostbackBackfill,
}

impl Endpoint {
    /// All routes, in the order of the API doc's endpoint index.
    pub const ALL: [Endpoint; 19] = [
        Self::AppAdd,
        Self::AppUpdate,
        Self::AppDetails,
        Self::TemplateAdd,
        Self::TemplateUpdate,
        Self::TemplateDetails,
        Self::TemplateList,
        Self::VerificationSend,
        Self::VerificationSendRule,
        Self::VerificationResend,
        Self::VerificationVerify,
        Self::VerificationRecord,
        Self::VerificationOrderIdRecord,
        Self::FlowAdd,
        Self::FlowUpdate,
        Self::FlowDetails,
        Self::FlowList,
        Self::BackfillRate,
        Self::PostbackBackfill,
    ];

    /// The route template, e.g. `"PUT /app/update/{appId}"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AppAdd => "POST /app/add",
            Self::AppUpdate => "PUT /app/update/{appId}",
            Self::AppDetails => "GET /app/details/{appId}",
            Self::TemplateAdd => "POST /template/add",
            Self::TemplateUpdate => "PUT /template/update/{templateId}",
            Self::TemplateDetails => "GET /template/details/{templateId}",
            Self::TemplateList => "GET /template/list",
            Self::VerificationSend => "POST /verification/send",
            Self::VerificationSendRule => "POST /verification/sendRule",
            Self::VerificationResend => "POST /verification/resend",
            Self::VerificationVerify => "POST /verification/verify",
            Self::VerificationRecord => "GET /verification/record/{verificationId}",
            Self::VerificationOrderIdRecord => "POST /verification/orderId/record",
            Self::FlowAdd => "POST /flow/add",
            Self::FlowUpdate => "PUT /flow/update/{flowId}",
            Self::FlowDetails => "GET /flow/details/{flowId}",
            Self::FlowList => "GET /flow/list",
            Self::BackfillRate => "POST /backfillRate",
            Self::PostbackBackfill => "POST /postback/backfill",
        }
    }

    pub(crate) fn method(&self) -> Method {
        match self.as_str().split_once(' ').map(|(m, _)| m) {
            Some("PUT") => Method::PUT,
            Some("GET") => Method::GET,
            _ => Method::POST,
        }
    }

    /// The fixed path segments (before any `{id}`), e.g. `["app", "update"]`.
    pub(crate) fn fixed_segments(&self) -> impl Iterator<Item = &'static str> {
        let path = self.as_str().split_once(' ').map_or("", |(_, p)| p);
        path.split('/')
            .filter(|s| !s.is_empty() && !s.starts_with('{'))
    }

    /// Whether the route ends in a `{…Id}` path parameter.
    pub(crate) fn takes_id(&self) -> bool {
        self.as_str().ends_with('}')
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_methods() {
        assert_eq!(Endpoint::AppUpdate.to_string(), "PUT /app/update/{appId}");
        assert_eq!(Endpoint::AppUpdate.method(), Method::PUT);
        assert_eq!(Endpoint::FlowUpdate.method(), Method::PUT);
        assert_eq!(Endpoint::FlowList.method(), Method::GET);
        assert_eq!(Endpoint::BackfillRate.method(), Method::POST);
        assert_eq!(
            Endpoint::VerificationOrderIdRecord
                .fixed_segments()
                .collect::<Vec<_>>(),
            ["verification", "orderId", "record"]
        );
        assert_eq!(
            Endpoint::VerificationRecord
                .fixed_segments()
                .collect::<Vec<_>>(),
            ["verification", "record"]
        );
        assert!(Endpoint::VerificationRecord.takes_id());
        assert!(!Endpoint::TemplateList.takes_id());
    }

    #[test]
    fn every_route_is_well_formed() {
        let ids = Endpoint::ALL.iter().filter(|e| e.takes_id()).count();
        assert_eq!(ids, 7);
        for e in Endpoint::ALL {
            let (method, path) = e.as_str().split_once(' ').expect("method and path");
            assert!(matches!(method, "GET" | "POST" | "PUT"), "{e}");
            assert!(path.starts_with('/'), "{e}");
            assert_eq!(e.method() == Method::GET, method == "GET");
        }
    }
}
