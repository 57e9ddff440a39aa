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
//!
//! [`bind_all`] binds the whole list, both protocols on each address. With more than
//! one worker (`[server] threads`), each address gets one UDP socket per worker, all
//! bound with `SO_REUSEPORT`: the kernel spreads the clients over them by a hash of the
//! source address and port, and each socket has a receive loop of its own.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::ServeError;

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

/// The receive buffer asked for on each UDP socket. Linux caps it at
/// `net.core.rmem_max` and doubles it for its bookkeeping: on a stock system (212,992)
/// that is twice the default buffer, about 500 queued queries instead of 256; where
/// `rmem_max` allows, 2 MiB. A buffer is a limit, not memory taken: it fills only while
/// the thread is behind (a burst while the CPUs are busy), and the rest was dropped by
/// the kernel.
const RECV_BUFFER: usize = 1 << 20;

/// A non-blocking UDP socket bound to `addr`, sharing it with the other sockets of
/// the address when `shared` (`SO_REUSEPORT`).
pub(super) fn udp(addr: SocketAddr, v6_only: bool, shared: bool) -> io::Result<UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP, v6_only)?;
    if shared {
        s.set_reuse_port(true)?;
    }
    s.set_recv_buffer_size(RECV_BUFFER)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The UDP sockets of one address (one per worker) and its TCP listener.
pub(super) struct Bound {
    pub(super) udp: Vec<UdpSocket>,
    pub(super) tcp: TcpListener,
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

/// Bind every address of `listen`, TCP once and UDP `udp_each` times (at least once).
/// The IPv6 loopback and wildcard are skipped with a warning on a host without IPv6
/// ([`ipv6_missing`]), unless nothing else could be bound.
pub(super) async fn bind_all(
    listen: &[SocketAddr],
    udp_each: usize,
) -> Result<Vec<Bound>, ServeError> {
    let mut bound = Vec::new();
    let mut no_ipv6 = None;
    for addr in listen {
        match bind(*addr, listen, udp_each.max(1)).await {
            Ok(b) => bound.push(b),
            Err(ServeError::Bind {
                addr,
                proto,
                source,
            }) if ipv6_missing(addr, &source) => {
                tracing::warn!("IPv6 is off on this host: not listening on {addr} ({source})");
                no_ipv6.get_or_insert(ServeError::Bind {
                    addr,
                    proto,
                    source,
                });
            }
            Err(e) => return Err(e),
        }
    }
    // Nothing bound at all: that is an error even when IPv6 is why.
    if bound.is_empty()
        && let Some(e) = no_ipv6
    {
        return Err(e);
    }
    Ok(bound)
}

/// Bind `udp_n` UDP sockets and TCP on `addr`; with port 0, all get the same free
/// port. `listen` is the whole list, which decides whether an IPv6 wildcard is v6-only
/// (see [`v6_only`]).
async fn bind(addr: SocketAddr, listen: &[SocketAddr], udp_n: usize) -> Result<Bound, ServeError> {
    let v6_only = v6_only(addr, listen);
    let shared = udp_n > 1;
    let udp_err = |source| ServeError::Bind {
        addr,
        proto: "udp",
        source,
    };
    for _ in 0..20 {
        let first = udp(addr, v6_only, shared).map_err(udp_err)?;
        let local = first.local_addr().map_err(udp_err)?;
        let mut all = vec![first];
        for _ in 1..udp_n {
            all.push(udp(local, v6_only, shared).map_err(udp_err)?);
        }
        match tcp(local, v6_only) {
            Ok(tcp) => return Ok(Bound { udp: all, tcp }),
            Err(_) if addr.port() == 0 => continue,
            Err(source) => {
                return Err(ServeError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        }
    }
    Err(ServeError::Bind {
        addr,
        proto: "tcp",
        source: std::io::Error::other("no port free for both UDP and TCP"),
    })
}

/// Whether a failed bind on `addr` only says that this host runs without IPv6 (the
/// kernel has no IPv6, or it is disabled and `::1` does not exist). For the IPv6
/// loopback and wildcard, which the default config lists next to 127.0.0.1, that skips
/// the address with a warning, as dnsmasq and Pi-hole start on IPv4-only hosts; any
/// other address that cannot be bound stops the start.
fn ipv6_missing(addr: SocketAddr, e: &std::io::Error) -> bool {
    let std::net::IpAddr::V6(ip) = addr.ip() else {
        return false;
    };
    (ip.is_loopback() || ip.is_unspecified())
        && (e.kind() == std::io::ErrorKind::AddrNotAvailable
            || e.raw_os_error() == Some(libc::EAFNOSUPPORT))
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

    /// The listener asks for a larger receive buffer than the default, so a burst
    /// waits in the kernel instead of being dropped while the thread is behind: the
    /// kernel grants twice what was asked, up to `rmem_max`.
    #[test]
    fn a_udp_socket_gets_the_larger_receive_buffer_the_kernel_allows() {
        let Ok(max) = std::fs::read_to_string("/proc/sys/net/core/rmem_max") else {
            eprintln!("skipped: no /proc/sys/net/core/rmem_max");
            return;
        };
        let max: usize = max.trim().parse().unwrap();
        let s = socket2::SockRef::from(&udp(a("127.0.0.1:0"), false, false).unwrap())
            .recv_buffer_size()
            .unwrap();
        assert_eq!(s, 2 * RECV_BUFFER.min(max));
    }

    #[test]
    fn only_the_ipv6_loopback_and_wildcard_are_skipped_when_ipv6_is_off() {
        use std::io::{Error, ErrorKind};
        let gone = || Error::from(ErrorKind::AddrNotAvailable);
        let no_family = || Error::from_raw_os_error(libc::EAFNOSUPPORT);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(ipv6_missing(a("[::1]:53"), &gone()));
        assert!(ipv6_missing(a("[::]:53"), &no_family()));
        assert!(ipv6_missing(a("[::1]:5335"), &no_family()));
        // An address the household named is not silently dropped.
        assert!(!ipv6_missing(a("[fd00::2]:53"), &gone()));
        assert!(!ipv6_missing(a("127.0.0.1:53"), &gone()));
        // Nor is a port another program holds, or one we may not bind.
        assert!(!ipv6_missing(
            a("[::1]:53"),
            &Error::from(ErrorKind::AddrInUse)
        ));
        assert!(!ipv6_missing(
            a("[::1]:53"),
            &Error::from(ErrorKind::PermissionDenied)
        ));
    }
}
