//! Datagram I/O for the UDP listener: on Linux `recvmmsg(2)` and `sendmmsg(2)` move up
//! to [`BATCH`] queries or answers per system call (under load the system calls, not our
//! code, were most of the CPU per query); one datagram moves with `recvfrom(2)` and
//! `sendto(2)`, which cost less per call than their batched forms (at 2000 qps, 22.6
//! against 23.5 µs per query for the send and 20.8 against 22.6 for the receive in a
//! bare tokio responder, see docs/performance.md). Elsewhere one datagram per call. The
//! socket is blocking: the listener's thread waits in the receive call while nothing is
//! in flight ([`Wait::Yes`]), and for readiness on its runtime otherwise ([`Wait::No`],
//! see `udp.rs`); it chooses between one and a batch ([`Receive`]). Sends never wait
//! (`MSG_DONTWAIT`).

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams moved per system call at most.
pub(crate) const BATCH: usize = 32;

/// Bytes read per query. DNS queries are a few hundred bytes at most; a longer datagram
/// is cut and then dropped as malformed.
const SLOT: usize = 4096;

/// Whether a receive waits for a datagram (the socket is blocking; sends never wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Yes,
    No,
}

/// How many datagrams the next receive asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receive {
    One,
    Batch,
}

/// Queries received by one call.
pub(crate) struct Inbox {
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    n: usize,
    /// The kernel's view of `bufs`, set up once (zeroing it per call was half the CPU
    /// of a lightly loaded server).
    #[cfg(target_os = "linux")]
    headers: sys::Headers,
}

impl Default for Inbox {
    fn default() -> Self {
        let mut bufs = vec![0; BATCH * SLOT].into_boxed_slice();
        Inbox {
            #[cfg(target_os = "linux")]
            headers: sys::Headers::new(Some(&mut bufs)),
            bufs,
            lens: [0; BATCH],
            from: [None; BATCH],
            n: 0,
        }
    }
}

impl Inbox {
    /// How many datagrams the last [`recv`] got.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Datagram `i` and its sender; `None` when it was cut short or its sender is not
    /// an IP address.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.n || self.lens[i] > SLOT {
            return None;
        }
        let len = self.lens[i];
        Some((&self.bufs[i * SLOT..i * SLOT + len], self.from[i]?))
    }
}

/// Answers to send with one call.
pub(crate) struct Outbox {
    bufs: Vec<Vec<u8>>,
    /// Where each queued answer goes (entries from `n` on are stale).
    to: [SocketAddr; BATCH],
    n: usize,
    #[cfg(target_os = "linux")]
    headers: sys::Headers,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            to: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            n: 0,
            #[cfg(target_os = "linux")]
            headers: sys::Headers::new(None),
        }
    }
}

impl Outbox {
    /// The buffer for the next answer (write it, then [`Outbox::push`]).
    pub(crate) fn next(&mut self) -> &mut Vec<u8> {
        &mut self.bufs[self.n]
    }

    /// Queue the answer written into [`Outbox::next`] for `to`.
    pub(crate) fn push(&mut self, to: SocketAddr) {
        self.to[self.n] = to;
        self.n += 1;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.n == BATCH
    }

    /// Answers queued, with their destination.
    fn queued(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.bufs[..self.n]
            .iter()
            .zip(self.to)
            .map(|(b, to)| (b.as_slice(), to))
    }

    /// Send every queued answer and empty the box. An answer the socket cannot take now
    /// is handed back to `later` (to be sent by a task); one that fails is logged.
    pub(crate) fn flush(&mut self, socket: &UdpSocket, mut later: impl FnMut(&[u8], SocketAddr)) {
        let mut sent = 0;
        while sent < self.n {
            match send(socket, self, sent) {
                Ok(k) => sent += k.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    for (bytes, to) in self.queued().skip(sent) {
                        later(bytes, to);
                    }
                    break;
                }
                Err(e) => {
                    // The first unsent answer failed (an unroutable client, ...): skip it.
                    tracing::debug!(to = %self.to[sent], error = %e, "udp send failed");
                    sent += 1;
                }
            }
        }
        self.n = 0;
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use std::net::UdpSocket;

    use super::{BATCH, Inbox, Outbox, Receive, SLOT, Wait};

    /// `mmsghdr`s, their `iovec`s and address buffers, wired together once.
    pub(crate) struct Headers {
        names: Box<[libc::sockaddr_storage; BATCH]>,
        iovs: Box<[libc::iovec; BATCH]>,
        hdrs: Box<[libc::mmsghdr; BATCH]>,
    }

    // SAFETY: the raw pointers inside point only into this value's own heap boxes (and,
    // for an Inbox, into its `bufs` box, which lives exactly as long); the value is used
    // by one task at a time, from whichever thread polls it.
    unsafe impl Send for Headers {}

    impl Headers {
        /// Headers whose iovecs point at `bufs` (one SLOT each) when given.
        pub(crate) fn new(bufs: Option<&mut [u8]>) -> Headers {
            // SAFETY: all-zero is a valid value of these plain C structs.
            let mut h = unsafe {
                Headers {
                    names: Box::new(zeroed()),
                    iovs: Box::new(zeroed()),
                    hdrs: Box::new(zeroed()),
                }
            };
            let base = bufs.map(|b| b.as_mut_ptr());
            for i in 0..BATCH {
                if let Some(base) = base {
                    // SAFETY: `bufs` holds BATCH slots of SLOT bytes.
                    h.iovs[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
                    h.iovs[i].iov_len = SLOT;
                }
                let m = &mut h.hdrs[i].msg_hdr;
                m.msg_name = (&raw mut h.names[i]).cast();
                m.msg_iov = &raw mut h.iovs[i];
                m.msg_iovlen = 1;
            }
            h
        }
    }

    /// Receive one datagram or up to [`BATCH`]. With [`Wait::No`], `WouldBlock` when
    /// there are none; with [`Wait::Yes`] (a blocking socket), wait for the first, then
    /// take what else is queued without waiting (`MSG_WAITFORONE`).
    pub(crate) fn recv(
        socket: &UdpSocket,
        inbox: &mut Inbox,
        how: Receive,
        wait: Wait,
    ) -> io::Result<usize> {
        inbox.n = 0;
        let fd = socket.as_raw_fd();
        let h = &mut inbox.headers;
        let (one, batch) = match wait {
            Wait::No => (libc::MSG_DONTWAIT, libc::MSG_DONTWAIT),
            Wait::Yes => (0, libc::MSG_WAITFORONE),
        };
        if how == Receive::One {
            let mut namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: slot 0 of the inbox's buffer (SLOT bytes) and its address storage
            // are alive and as long as stated. MSG_TRUNC: the datagram's whole length
            // comes back, so one longer than the slot is seen as cut.
            let len = unsafe {
                libc::recvfrom(
                    fd,
                    h.iovs[0].iov_base,
                    SLOT,
                    one | libc::MSG_TRUNC,
                    (&raw mut h.names[0]).cast(),
                    &mut namelen,
                )
            };
            if len < 0 {
                return Err(io::Error::last_os_error());
            }
            inbox.lens[0] = len as usize;
            inbox.from[0] = from_storage(&h.names[0]);
            inbox.n = 1;
            return Ok(1);
        }
        for hdr in h.hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the headers point into live buffers of the lengths they state.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                h.hdrs.as_mut_ptr(),
                BATCH as _,
                batch as _, // c_int on glibc, c_uint on musl
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let hdr = &h.hdrs[i];
            let cut = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            inbox.lens[i] = if cut { SLOT + 1 } else { hdr.msg_len as usize };
            inbox.from[i] = from_storage(&h.names[i]);
        }
        inbox.n = n;
        Ok(n)
    }

    /// Send the queued answers from `first` on with one call; how many went.
    pub(crate) fn send(socket: &UdpSocket, outbox: &mut Outbox, first: usize) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let h = &mut outbox.headers;
        let m = outbox.n - first;
        if m == 1 {
            let buf = &outbox.bufs[first];
            let namelen = to_storage(outbox.to[first], &mut h.names[0]);
            // SAFETY: the answer and the address storage are alive, of the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw const h.names[0]).cast(),
                    namelen,
                )
            };
            return if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(1)
            };
        }
        for (j, i) in (first..outbox.n).enumerate() {
            let buf = &outbox.bufs[i];
            h.iovs[j].iov_base = buf.as_ptr() as *mut libc::c_void;
            h.iovs[j].iov_len = buf.len();
            h.hdrs[j].msg_hdr.msg_namelen = to_storage(outbox.to[i], &mut h.names[j]);
        }
        // SAFETY: the headers point into `outbox.bufs` (the kernel only reads them, for
        // the lengths given) and into `h`, all alive until sendmmsg returns.
        let n = unsafe { libc::sendmmsg(fd, h.hdrs.as_mut_ptr(), m as _, libc::MSG_DONTWAIT as _) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
            }
            _ => None,
        }
    }

    fn to_storage(to: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match to {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in,
                // and all-zero is a valid sockaddr_in.
                let sin =
                    unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                *sin = unsafe { zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe {
                    &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                *sin6 = unsafe { zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::net::UdpSocket;

    use super::{Inbox, Outbox, Receive, SLOT, Wait};

    /// Receive one datagram (also when asked for a batch); with [`Wait::No`],
    /// `WouldBlock` when there is none.
    pub(crate) fn recv(
        socket: &UdpSocket,
        inbox: &mut Inbox,
        _: Receive,
        wait: Wait,
    ) -> io::Result<usize> {
        inbox.n = 0;
        let flags = if wait == Wait::No {
            libc::MSG_DONTWAIT
        } else {
            0
        };
        // SAFETY: a u8 buffer viewed as MaybeUninit<u8>, which it already is.
        let buf = unsafe {
            &mut *(&mut inbox.bufs[..SLOT] as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
        };
        let (len, from) = socket2::SockRef::from(socket).recv_from_with_flags(buf, flags)?;
        let from = from.as_socket().ok_or(io::ErrorKind::InvalidData)?;
        inbox.lens[0] = len;
        inbox.from[0] = Some(from);
        inbox.n = 1;
        Ok(1)
    }

    /// Send the answer at `first`.
    pub(crate) fn send(socket: &UdpSocket, outbox: &mut Outbox, first: usize) -> io::Result<usize> {
        super::send_one(socket, &outbox.bufs[first], outbox.to[first])?;
        Ok(1)
    }
}

/// Send one datagram without waiting (`WouldBlock` when the socket has no room).
pub(crate) fn send_one(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    socket2::SockRef::from(socket).send_to_with_flags(bytes, &to.into(), libc::MSG_DONTWAIT)
}

pub(crate) use sys::recv;
use sys::send;

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (server, client)
    }

    /// Receive once the socket is readable (waited for with `poll`, at most 5 s).
    fn recv_wait(s: &UdpSocket, inbox: &mut Inbox, how: Receive) -> usize {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 5000) }, 1, "nothing arrived");
        recv(s, inbox, how, Wait::No).unwrap()
    }

    #[test]
    fn one_at_a_time_a_cut_datagram_is_seen_as_cut_and_the_queue_as_empty() {
        let (server, client) = pair();
        let to = server.local_addr().unwrap();
        client.send_to(&[7; SLOT + 100], to).unwrap();
        client.send_to(b"next", to).unwrap();
        let mut inbox = Inbox::default();
        assert_eq!(recv_wait(&server, &mut inbox, Receive::One), 1);
        assert!(inbox.get(0).is_none(), "longer than a slot: cut, not whole");
        assert_eq!(recv_wait(&server, &mut inbox, Receive::One), 1);
        let (bytes, from) = inbox.get(0).unwrap();
        assert_eq!(bytes, b"next");
        assert_eq!(from, client.local_addr().unwrap());
        let e = recv(&server, &mut inbox, Receive::One, Wait::No).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(inbox.len(), 0);
    }

    #[test]
    fn a_batch_takes_what_is_queued_in_order() {
        let (server, client) = pair();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 3], to).unwrap();
        }
        let mut inbox = Inbox::default();
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = recv_wait(&server, &mut inbox, Receive::Batch);
            got.extend((0..n).map(|i| inbox.get(i).unwrap().0.to_vec()));
        }
        assert_eq!(got, (0..5u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
    }

    #[test]
    fn one_answer_or_several_reach_their_clients() {
        let (server, a) = pair();
        let (_, b) = pair();
        for count in [1, 3] {
            let mut outbox = Outbox::default();
            for i in 0..count {
                let to = if i % 2 == 0 { &a } else { &b };
                outbox.next().clear();
                outbox.next().extend_from_slice(&[count as u8, i as u8]);
                outbox.push(to.local_addr().unwrap());
            }
            outbox.flush(&server, |_, to| panic!("no room for {to}"));
            let mut buf = [0; 8];
            for i in 0..count {
                let to = if i % 2 == 0 { &a } else { &b };
                let (n, from) = to.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], [count as u8, i as u8]);
                assert_eq!(from, server.local_addr().unwrap());
            }
        }
    }
}
