//! Encrypted loopback upstreams: hickory-server's DNS-over-TLS and DNS-over-HTTPS
//! listeners on 127.0.0.1, answering every A query with 192.0.2.7.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Metadata;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;

/// Answers every A query with 192.0.2.7.
pub struct Fixed;

#[async_trait::async_trait]
impl RequestHandler for Fixed {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let info = request.request_info().expect("one question");
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let rec = Record::from_rdata(
            info.query.original().name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        );
        let resp =
            MessageResponseBuilder::from_message_request(request).build(meta, [&rec], [], [], []);
        rh.send_response(resp).await.expect("answer sent")
    }
}

/// A DNS-over-TLS server on 127.0.0.1 with `tls` (ALPN "dot"); its address.
pub async fn dot(tls: Arc<rustls::ServerConfig>) -> (SocketAddr, Server<Fixed>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut server = Server::new(Fixed);
    server
        .register_tls_listener_with_tls_config(listener, Duration::from_secs(5), tls)
        .unwrap();
    (addr, server)
}

/// A DNS-over-HTTPS server on 127.0.0.1 with `tls` (ALPN "h2") for `dns.test` at
/// /dns-query; its address.
pub async fn doh(tls: Arc<rustls::ServerConfig>) -> (SocketAddr, Server<Fixed>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut server = Server::new(Fixed);
    server
        .register_https_listener_with_tls_config(
            listener,
            Duration::from_secs(5),
            tls,
            Some("dns.test".to_string()),
            "/dns-query".to_string(),
        )
        .unwrap();
    (addr, server)
}
