//! `itnio.otp.v1.RecordService`: delivery records, over `/verification/record` and
//! `/verification/orderId/record`.

use tonic::{Request, Response, Status};

use crate::{
    convert::records as convert,
    proto::v1::{self as pb, record_service_server::RecordService},
    upstream::UpstreamClient,
    watch::{RecordStream, WatchHub},
};

use super::deadline;

/// Serves `RecordService` by calling ITNIO; watches share pollers through the hub.
#[derive(Clone)]
pub struct RecordApi {
    upstream: UpstreamClient,
    watches: WatchHub,
}

impl RecordApi {
    /// A service calling ITNIO through `upstream` and streaming through `watches`.
    pub fn new(upstream: UpstreamClient, watches: WatchHub) -> Self {
        Self { upstream, watches }
    }
}

#[tonic::async_trait]
impl RecordService for RecordApi {
    async fn get_record(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::GetRecordResponse>, Status> {
        convert::get_request(request.get_ref())?;
        let verification_id = &request.get_ref().verification_id;
        let record = self
            .upstream
            .get_record(verification_id, deadline(&request))
            .await?;
        Ok(Response::new(pb::GetRecordResponse {
            record: Some(convert::from_wire(record)),
        }))
    }

    async fn get_order_record(
        &self,
        request: Request<pb::GetOrderRecordRequest>,
    ) -> Result<Response<pb::GetOrderRecordResponse>, Status> {
        let req = request.get_ref();
        let body = convert::order_request("", &req.app_id, &req.order_id)?;
        let record = self
            .upstream
            .get_order_record(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::GetOrderRecordResponse {
            record: Some(convert::from_wire(record)),
        }))
    }

    type WatchRecordStream = RecordStream;

    async fn watch_record(
        &self,
        request: Request<pb::WatchRecordRequest>,
    ) -> Result<Response<Self::WatchRecordStream>, Status> {
        let key = convert::watch_key(request.get_ref())?;
        Ok(Response::new(self.watches.watch(key, deadline(&request))))
    }
}
