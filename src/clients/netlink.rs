//! The kernel's neighbour tables (ARP and IPv6 neighbour discovery) in one rtnetlink
//! dump: no `ip` process, and quick enough (tens of µs) to ask when a query comes from
//! an address the last refresh did not know; and, for an address the kernel does not
//! know either, its neighbour events while it resolves that address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Mac;

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states with no usable link-layer address, and NOARP entries (multicast
/// groups, point-to-point links), which are no client; `ip neigh` hides them too.
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;
const NLMSG_HDRLEN: usize = 16;
/// `struct ndmsg`: family, 3 pad bytes, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
/// The multicast group of neighbour events (`RTMGRP_NEIGH`).
const RTMGRP_NEIGH: u32 = 0x4;
/// The discard port: where the datagram that makes the kernel resolve an address goes.
const DISCARD_PORT: u16 = 9;

/// Every neighbour with a MAC (all interfaces, both families). `timeout` bounds each
/// read, so a kernel that does not answer cannot hold the caller.
pub(crate) fn neighbours(timeout: Duration) -> io::Result<Vec<(IpAddr, Mac)>> {
    let fd = open(0)?;
    socket2::SockRef::from(&fd).set_read_timeout(Some(timeout))?;

    let seq: u32 = 1;
    let mut req = [0u8; NLMSG_HDRLEN + NDMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + NDMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // ndmsg family AF_UNSPEC (0): both families.
    // SAFETY: an all-zero sockaddr_nl is valid; family set below (pid 0: the kernel).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 || parse(&buf[..n as usize], seq, &mut out)? {
            return Ok(out);
        }
    }
}

/// A rtnetlink socket, subscribed to `groups`.
fn open(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if groups != 0 {
        // SAFETY: an all-zero sockaddr_nl is valid (pid 0: the kernel picks one).
        let mut me: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        me.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        me.nl_groups = groups;
        // SAFETY: `me` outlives the call; the length is its size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const me).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// The kernel's neighbour events (`RTMGRP_NEIGH`, no privilege needed), subscribed to
/// before a dump so that an entry made after the dump is still seen.
pub(crate) struct Watch(OwnedFd);

/// Subscribe to the kernel's neighbour events.
pub(crate) fn watch() -> io::Result<Watch> {
    open(RTMGRP_NEIGH).map(Watch)
}

impl Watch {
    /// Have the kernel find the MAC of `ip`, which its tables do not have (a phone's new
    /// IPv6 privacy address: the phone knows the router, so it sent no solicitation the
    /// router could learn from), and wait at most `wait` for it. One empty UDP datagram
    /// to the discard port (9) of `ip` makes the kernel send an ARP request or a neighbour
    /// solicitation first; the device's answer is the event awaited. No privilege needed.
    pub(crate) fn resolve(&self, ip: IpAddr, wait: Duration) -> Option<Mac> {
        let deadline = Instant::now() + wait;
        let local: IpAddr = match ip {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let udp = std::net::UdpSocket::bind((local, 0)).ok()?;
        udp.send_to(&[], (ip, DISCARD_PORT)).ok()?;
        let sock = socket2::SockRef::from(&self.0);
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            // A zero timeout would mean "wait for ever".
            sock.set_read_timeout(Some(left.max(Duration::from_micros(1))))
                .ok()?;
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                // Timed out, or the socket failed (ENOBUFS after a burst of events).
                return None;
            }
            seen.clear();
            // Events carry sequence number 0.
            if parse(&buf[..n as usize], 0, &mut seen).is_ok()
                && let Some(&(_, mac)) = seen.iter().find(|(a, _)| *a == ip)
            {
                return Some(mac);
            }
        }
    }
}

/// Read one datagram of the dump into `out`; `true` once the dump is done.
fn parse(mut buf: &[u8], seq: u32, out: &mut Vec<(IpAddr, Mac)>) -> io::Result<bool> {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let kind = u16_at(buf, 4);
        let msg = &buf[NLMSG_HDRLEN..len];
        if u32_at(buf, 8) == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = msg
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                RTM_NEWNEIGH => out.extend(neighbour(msg)),
                _ => {}
            }
        }
        buf = buf.get(align(len)..).unwrap_or_default();
    }
    Ok(false)
}

/// One `RTM_NEWNEIGH`: its address and MAC, if it has a usable one.
fn neighbour(msg: &[u8]) -> Option<(IpAddr, Mac)> {
    let state = u16_at(msg.get(..NDMSG_LEN)?, 8);
    if state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP) != 0 {
        return None;
    }
    let (mut dst, mut mac) = (None, None);
    let mut attrs = msg.get(NDMSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0));
        if len < 4 || len > attrs.len() {
            break;
        }
        let data = &attrs[4..len];
        match u16_at(attrs, 2) {
            NDA_DST => {
                dst = match data.len() {
                    4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
                    16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
                    _ => None,
                }
            }
            NDA_LLADDR => mac = <[u8; 6]>::try_from(data).ok().map(Mac),
            _ => {}
        }
        attrs = attrs.get(align(len)..).unwrap_or_default();
    }
    let mac = mac.filter(|m| !m.is_zero())?;
    Some((dst.filter(|d| !d.is_multicast())?.to_canonical(), mac))
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel writes it: header, ndmsg with `state`, attributes.
    fn msg(kind: u16, seq: u32, state: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0u8; NDMSG_LEN];
        body[8..10].copy_from_slice(&state.to_ne_bytes());
        for (t, data) in attrs {
            let len = 4 + data.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize(align(body.len()), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_dump_gives_reachable_and_stale_neighbours_with_a_mac() {
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let v6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut buf = msg(
            RTM_NEWNEIGH,
            1,
            0x04,
            &[(NDA_DST, &[192, 168, 1, 9]), (NDA_LLADDR, &mac)],
        );
        buf.extend(msg(
            RTM_NEWNEIGH,
            1,
            0x02,
            &[(NDA_DST, &v6.octets()), (NDA_LLADDR, &mac)],
        ));
        // Incomplete, failed, no MAC, another request's answer: left out.
        buf.extend(msg(
            RTM_NEWNEIGH,
            1,
            NUD_INCOMPLETE,
            &[(NDA_DST, &[10, 0, 0, 1])],
        ));
        buf.extend(msg(
            RTM_NEWNEIGH,
            1,
            NUD_FAILED,
            &[(NDA_DST, &[10, 0, 0, 2]), (NDA_LLADDR, &mac)],
        ));
        buf.extend(msg(RTM_NEWNEIGH, 1, 0x02, &[(NDA_DST, &[10, 0, 0, 3])]));
        let group: Ipv6Addr = "ff02::16".parse().unwrap();
        buf.extend(msg(
            RTM_NEWNEIGH,
            1,
            NUD_NOARP,
            &[(NDA_DST, &group.octets()), (NDA_LLADDR, &mac)],
        ));
        buf.extend(msg(
            RTM_NEWNEIGH,
            9,
            0x02,
            &[(NDA_DST, &[10, 0, 0, 4]), (NDA_LLADDR, &mac)],
        ));
        let mut out = Vec::new();
        assert!(!parse(&buf, 1, &mut out).unwrap());
        assert_eq!(
            out,
            [
                ("192.168.1.9".parse().unwrap(), Mac(mac)),
                (IpAddr::V6(v6), Mac(mac))
            ]
        );
        assert!(parse(&msg(NLMSG_DONE, 1, 0, &[]), 1, &mut out).unwrap());
    }

    /// What `Watch::resolve` reads: events (sequence 0), first the incomplete entry the
    /// datagram made, then the device's answer.
    #[test]
    fn neighbour_events_give_the_mac_once_resolved() {
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let v6: Ipv6Addr = "2001:db8::a1b2:c3d4".parse().unwrap();
        let mut out = Vec::new();
        let incomplete = msg(RTM_NEWNEIGH, 0, NUD_INCOMPLETE, &[(NDA_DST, &v6.octets())]);
        assert!(!parse(&incomplete, 0, &mut out).unwrap());
        assert!(out.is_empty());
        let reachable = msg(
            RTM_NEWNEIGH,
            0,
            0x02,
            &[(NDA_DST, &v6.octets()), (NDA_LLADDR, &mac)],
        );
        assert!(!parse(&reachable, 0, &mut out).unwrap());
        assert_eq!(out, [(IpAddr::V6(v6), Mac(mac))]);
    }

    #[test]
    fn truncated_or_error_messages_are_errors_not_panics() {
        let m = msg(RTM_NEWNEIGH, 1, 0x02, &[(NDA_DST, &[10, 0, 0, 3])]);
        let mut out = Vec::new();
        for cut in 0..m.len() {
            let _ = parse(&m[..cut], 1, &mut out);
        }
        let mut err = msg(NLMSG_ERROR, 1, 0, &[]);
        err[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = parse(&err, 1, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }

    /// The same table `ip neigh` (iproute2) shows.
    #[test]
    fn the_dump_agrees_with_ip_neigh() {
        let Ok(ours) = neighbours(Duration::from_secs(1)) else {
            eprintln!("skipped: no rtnetlink here");
            return;
        };
        let Ok(out) = std::process::Command::new("ip")
            .args(["neigh", "show"])
            .output()
        else {
            eprintln!("skipped: no ip(8)");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut theirs = super::super::neigh::parse_ip_neigh(&text);
        let mut ours = ours;
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{text}");
    }
}
