//! The embedded lists over real sockets, through CNAME chains: an advertiser's own
//! Conversions API Gateway name that CNAMEs into `conversionsapigateway.com` is blocked
//! as `pixel` without being listed; a shop name that CNAMEs elsewhere is answered.

use crate::support::*;
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn an_advertisers_gateway_name_cnamed_to_the_capi_gateway_is_blocked() {
    let up = Upstream::start().await;
    up.set(
        "capi.shop.example",
        Behaviour::Records(vec![
            cname(
                "capi.shop.example.",
                "shop-4711.gw.conversionsapigateway.com.",
                300,
            ),
            a(
                "shop-4711.gw.conversionsapigateway.com.",
                [198, 51, 100, 9],
                60,
            ),
        ]),
    );
    up.set(
        "www.shop.example",
        Behaviour::Records(vec![
            cname("www.shop.example.", "shop.example.cdn.example.net.", 300),
            a("shop.example.cdn.example.net.", [198, 51, 100, 10], 60),
        ]),
    );
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for m in [
        udp(addr, "capi.shop.example.", RecordType::A, Q::default()).await,
        tcp(addr, "capi.shop.example.", RecordType::A, Q::default()).await,
    ] {
        assert_eq!(ips(&m), ["0.0.0.0"]);
        let (code, text) = ede(&m).expect("EDE on a blocked answer");
        assert_eq!(code, 15);
        assert!(text.contains("pixel"), "{text}");
    }
    let m = udp(addr, "www.shop.example.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["198.51.100.10"]);
    assert!(ede(&m).is_none());
    assert_eq!(srv.stats().cname_blocked, 2);
    srv.stop().await;
}
