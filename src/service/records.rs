//! `itnio.otp.v1.RecordService`: delivery records, over `/verification/record` and
//! `/verification/orderId/record`.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    caller::Caller,
    convert::records as convert,
    proto::v1::{self as pb, record_service_server::RecordService},
    watch::{RecordStream, WatchHub, Watcher},
};

use super::deadline;

/// Serves `RecordService` by calling ITNIO; watches share pollers through the hub.
#[derive(Clone)]
pub struct RecordApi {
    accounts: Accounts,
    watches: WatchHub,
}

impl RecordApi {
    /// A service calling ITNIO on each caller's account and streaming through `watches`.
    pub fn new(accounts: Accounts, watches: WatchHub) -> Self {
        Self { accounts, watches }
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
            .accounts
            .client_for(&request)?
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
            .accounts
            .client_for(&request)?
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
        let caller = Caller::of(&request);
        let upstream = self.accounts.client(caller.account())?;
        let stream = self.watches.watch(
            watcher(&caller, &request),
            caller.account(),
            upstream,
            key,
            deadline(&request),
        )?;
        Ok(Response::new(stream))
    }
}

/// Whom a watch counts against: the authenticated caller, or without authentication (every
/// call is the anonymous caller) the connection it came on.
fn watcher<T>(caller: &Caller, request: &Request<T>) -> Watcher {
    if *caller == Caller::anonymous() {
        Watcher::Connection(request.remote_addr())
    } else {
        Watcher::Caller(caller.name().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_watches_count_per_connection_and_named_callers_as_themselves() {
        let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().expect("address");
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(peer),
            });
        assert_eq!(
            watcher(&Caller::anonymous(), &request),
            Watcher::Connection(Some(peer))
        );
        let alice = Caller::new("alice", "default");
        assert_eq!(watcher(&alice, &request), Watcher::Caller("alice".into()));
    }
}
