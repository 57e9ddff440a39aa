//! A bare UDP responder: every query gets the same A record, in one of these shapes
//! (the first argument):
//! `poll` (poll, recvfrom, sendto), `pollm` (poll, recvmmsg, sendmmsg), `epoll` (raw
//! edge-triggered epoll, recvfrom until EAGAIN, sendto), `tokio1` (tokio's one-worker
//! multi-thread runtime, recvfrom until EAGAIN, sendto), `ct1` (the same on a
//! current-thread runtime), `io1` (multi-thread with the I/O driver only), `tokio`
//! (recvmmsg and sendmmsg, metaguard's listener before 2026-12-07), `t1` (recvmmsg, and
//! sendto for a single answer), `t2` (recvfrom, then recvmmsg for the rest).
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const BATCH: usize = 32;

fn answer(q: &[u8], out: &mut [u8]) -> usize {
    // copy header+question, set QR/RA, ancount=1, append A 192.0.2.1 via pointer
    let n = q.len().min(400);
    out[..n].copy_from_slice(&q[..n]);
    out[2] |= 0x80;
    out[3] = 0x80;
    out[6] = 0;
    out[7] = 1;
    out[8] = 0;
    out[9] = 0;
    out[10] = 0;
    out[11] = 0;
    let rr = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1];
    out[n..n + 16].copy_from_slice(&rr);
    n + 16
}

struct Bufs {
    inb: Vec<[u8; 1500]>,
    outb: Vec<[u8; 1500]>,
    addrs: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    oiov: Vec<libc::iovec>,
    ohdr: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the headers point into this value's own vectors, and one
// task at a time uses it.
unsafe impl Send for Bufs {}
fn new_bufs() -> Bufs {
    Bufs {
        inb: vec![[0; 1500]; BATCH],
        outb: vec![[0; 1500]; BATCH],
        addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
        iov: vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0
            };
            BATCH
        ],
        hdr: vec![unsafe { std::mem::zeroed() }; BATCH],
        oiov: vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0
            };
            BATCH
        ],
        ohdr: vec![unsafe { std::mem::zeroed() }; BATCH],
    }
}
fn recv_batch(fd: i32, b: &mut Bufs) -> isize {
    for i in 0..BATCH {
        b.iov[i] = libc::iovec {
            iov_base: b.inb[i].as_mut_ptr() as _,
            iov_len: 1500,
        };
        b.hdr[i].msg_hdr.msg_iov = &mut b.iov[i];
        b.hdr[i].msg_hdr.msg_iovlen = 1;
        b.hdr[i].msg_hdr.msg_name = &mut b.addrs[i] as *mut _ as _;
        b.hdr[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
    }
    unsafe {
        libc::recvmmsg(
            fd,
            b.hdr.as_mut_ptr(),
            BATCH as _,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        ) as isize
    }
}
fn send_batch(fd: i32, b: &mut Bufs, n: usize) {
    for i in 0..n {
        let len = b.hdr[i].msg_len as usize;
        let (inb, outb) = (&b.inb[i], &mut b.outb[i]);
        let m = answer(&inb[..len], outb);
        b.oiov[i] = libc::iovec {
            iov_base: b.outb[i].as_mut_ptr() as _,
            iov_len: m,
        };
        b.ohdr[i].msg_hdr.msg_iov = &mut b.oiov[i];
        b.ohdr[i].msg_hdr.msg_iovlen = 1;
        b.ohdr[i].msg_hdr.msg_name = &mut b.addrs[i] as *mut _ as _;
        b.ohdr[i].msg_hdr.msg_namelen = b.hdr[i].msg_hdr.msg_namelen;
    }
    unsafe { libc::sendmmsg(fd, b.ohdr.as_mut_ptr(), n as _, libc::MSG_DONTWAIT) };
}
fn main() {
    let mode = std::env::args().nth(1).expect("MODE ADDR");
    let addr = std::env::args().nth(2).unwrap();
    let sock = UdpSocket::bind(&addr).unwrap();
    if mode == "epoll" {
        sock.set_nonblocking(true).unwrap();
        let ep = unsafe { libc::epoll_create1(0) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) };
        let mut b = [0u8; 1500];
        let mut o = [0u8; 1500];
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        loop {
            unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, -1) };
            while let Ok((n, src)) = sock.recv_from(&mut b) {
                let m = answer(&b[..n], &mut o);
                let _ = sock.send_to(&o[..m], src);
            }
        }
    }
    if mode == "pollm" {
        sock.set_nonblocking(true).unwrap();
        let mut b = new_bufs();
        loop {
            let mut p = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            unsafe { libc::poll(&mut p, 1, -1) };
            let n = recv_batch(sock.as_raw_fd(), &mut b);
            if n > 0 {
                send_batch(sock.as_raw_fd(), &mut b, n as usize);
            }
        }
    }
    if mode == "poll" {
        let mut b = [0u8; 1500];
        let mut o = [0u8; 1500];
        loop {
            let mut p = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            unsafe { libc::poll(&mut p, 1, -1) };
            sock.set_nonblocking(true).ok();
            if let Ok((n, src)) = sock.recv_from(&mut b) {
                let m = answer(&b[..n], &mut o);
                let _ = sock.send_to(&o[..m], src);
            }
        }
    }
    sock.set_nonblocking(true).unwrap();
    let rt = match mode.as_str() {
        "ct1" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        "io1" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .build()
            .unwrap(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    };
    let mode = if mode == "ct1" || mode == "io1" {
        "tokio1".to_string()
    } else {
        mode
    };
    rt.block_on(async move {
        // SAFETY: the socket owns its fd for as long as the AsyncFd that owns it.
        let fd =
            Arc::new(unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }.unwrap());
        let f2 = fd.clone();
        if mode == "t1" || mode == "t2" {
            let t2 = mode == "t2";
            tokio::spawn(async move {
                let mut b = new_bufs();
                let mut one = [0u8; 1500];
                let mut o = [0u8; 1500];
                loop {
                    let mut g = f2.readable().await.unwrap();
                    let fdr = g.get_inner().as_raw_fd();
                    if t2 {
                        match g.get_inner().recv_from(&mut one) {
                            Ok((n, src)) => {
                                let m = answer(&one[..n], &mut o);
                                let r = recv_batch(fdr, &mut b);
                                if r <= 0 {
                                    g.clear_ready();
                                    let _ = g.get_inner().send_to(&o[..m], src);
                                    continue;
                                }
                                let _ = g.get_inner().send_to(&o[..m], src);
                                if (r as usize) < BATCH {
                                    g.clear_ready();
                                }
                                send_batch(fdr, &mut b, r as usize);
                            }
                            Err(_) => {
                                g.clear_ready();
                            }
                        }
                        continue;
                    }
                    let n = recv_batch(fdr, &mut b);
                    if n < 0 {
                        g.clear_ready();
                        continue;
                    }
                    let n = n as usize;
                    if n < BATCH {
                        g.clear_ready();
                    }
                    if n == 1 {
                        let len = b.hdr[0].msg_len as usize;
                        let m = answer(&b.inb[0][..len], &mut o);
                        let sa = b.addrs[0];
                        let _ = unsafe {
                            libc::sendto(
                                fdr,
                                o.as_ptr() as _,
                                m,
                                libc::MSG_DONTWAIT,
                                &sa as *const _ as _,
                                b.hdr[0].msg_hdr.msg_namelen,
                            )
                        };
                    } else {
                        send_batch(fdr, &mut b, n);
                    }
                }
            });
            return std::future::pending::<()>().await;
        }
        if mode == "tokio1" {
            tokio::spawn(async move {
                let mut b = [0u8; 1500];
                let mut o = [0u8; 1500];
                loop {
                    let mut g = f2.readable().await.unwrap();
                    loop {
                        match g.get_inner().recv_from(&mut b) {
                            Ok((n, src)) => {
                                let m = answer(&b[..n], &mut o);
                                let _ = g.get_inner().send_to(&o[..m], src);
                            }
                            Err(_) => {
                                g.clear_ready();
                                break;
                            }
                        }
                    }
                }
            });
            return std::future::pending::<()>().await;
        }
        tokio::spawn(async move {
            let mut b = new_bufs();
            loop {
                let mut g = f2.readable().await.unwrap();
                let n = recv_batch(g.get_inner().as_raw_fd(), &mut b);
                if n < 0 {
                    g.clear_ready();
                    continue;
                }
                let n = n as usize;
                if n < BATCH {
                    g.clear_ready();
                }
                drop(g);
                send_batch(fd.get_ref().as_raw_fd(), &mut b, n);
            }
        });
        std::future::pending::<()>().await
    });
}
