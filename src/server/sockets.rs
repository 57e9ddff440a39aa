//! The listening sockets: UDP and TCP on one address, with `IPV6_V6ONLY` set the way
//! the listen list means it.
//!
//! `listen = ["0.0.0.0:53", "[::]:53"]` means IPv4 on the one socket and IPv6 on the
//! other, as dnsmasq and unbound bind them; on Linux (`net.ipv6.bindv6only = 0`) a
//! plain bind of `[::]:53` would also take IPv4's port 53 and the pair could not start.
//! So an IPv6 wildcard is v6-only when the list also names an IPv4 address (the
//! wildcard or one of the host's) on the same port, and dual-stack (IPv4 arrives as
//! `::ffff:a.b.c.d`) when no IPv4 address shares its port, whatever the host's sysctl
//! says: `listen = ["[::]:53"]` serves both families, as it always did on a default
//! Linux. Every other IPv6 address is v6-only (a specific address never receives IPv4
//! anyway).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// Whether the socket for `addr` must be v6-only, given every address in `listen`.
/// For IPv4 addresses the answer does not matter (false).
pub(super) fn v6_only(addr: SocketAddr, listen: &[SocketAddr]) -> bool {
    match addr {
        SocketAddr::V4(_) => false,
        SocketAddr::V6(a) if !a.ip().is_unspecified() => true,
        SocketAddr::V6(a) => listen.iter().any(|l| l.is_ipv4() && l.port() == a.port()),
    }
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol, v6_only: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(v6_only)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A UDP socket bound to `addr`.
pub(super) fn udp(addr: SocketAddr, v6_only: bool) -> io::Result<UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP, v6_only)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// A TCP listener on `addr`, with `SO_REUSEADDR` as `TcpListener::bind` sets it (a
/// restart does not wait for the old connections' TIME_WAIT).
pub(super) fn tcp(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP, v6_only)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_ipv6_wildcard_is_v6_only_next_to_an_ipv4_address_of_its_port() {
        let pair = [a("0.0.0.0:53"), a("[::]:53")];
        assert!(v6_only(a("[::]:53"), &pair));
        // Alone, or next to another port's IPv4 wildcard: both families.
        assert!(!v6_only(a("[::]:53"), &[a("[::]:53")]));
        assert!(!v6_only(a("[::]:53"), &[a("0.0.0.0:5335"), a("[::]:53")]));
        // A specific IPv4 address on the port: IPv4 is left to it.
        assert!(v6_only(a("[::]:53"), &[a("192.168.1.2:53"), a("[::]:53")]));
        assert!(v6_only(a("[::1]:53"), &[a("[::1]:53")]));
        assert!(!v6_only(a("0.0.0.0:53"), &pair));
    }
}
