//! The open-files limit `serve` needs for its caps: raised at start up to the hard
//! limit, with a warning when even that is too low.

use super::ServerConfig;
use super::tcp::TcpLimits;

/// Descriptors besides those of the listen addresses: stdio (3), the runtime's epoll
/// and wakers (~4), the database with its WAL and shared memory and the readers of
/// `status` (< 10), the dnstap socket (1), the metrics listener and its requests
/// (each lives at most 5 s), resolv.conf and list files while they are read, the
/// pooled TCP/DoT/DoH connection of each upstream, remote list and webhook fetches.
const MARGIN: u64 = 256;

/// Open files the caps can need with `listeners` addresses bound. Per address: its
/// UDP socket and TCP listener; one upstream socket per UDP query in flight (hickory
/// binds a fresh UDP socket per exchange, and a truncated answer's TCP retry comes
/// after that socket is closed); one socket per TCP connection; and one upstream
/// socket per TCP query in flight, which `tcp.max_in_flight` caps for the listener
/// (evicted connections' queries included) below connections × pipeline.
pub(crate) fn files_needed(cfg: &ServerConfig, listeners: usize, tcp: &TcpLimits) -> u64 {
    let connections = cfg.max_tcp_connections.get() as u64;
    let tcp_in_flight = (tcp.max_in_flight as u64).min(connections * tcp.pipeline as u64);
    let per_listener = 2 + cfg.max_udp_in_flight.get() as u64 + connections + tcp_in_flight;
    listeners as u64 * per_listener + MARGIN
}

/// The soft limit to set, given the current `soft` and `hard` limits and the `need`:
/// `None` when nothing is to change.
fn target(soft: u64, hard: u64, need: u64) -> Option<u64> {
    (soft < need && soft < hard).then_some(need.min(hard))
}

/// The soft and hard RLIMIT_NOFILE now.
#[allow(clippy::useless_conversion)] // rlim_t is u32 on 32-bit ARM
fn current() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((u64::from(lim.rlim_cur), u64::from(lim.rlim_max)))
}

/// Raise the soft RLIMIT_NOFILE to `need` (at most the hard limit); warn when the
/// limit stays below it.
pub(crate) fn raise_nofile(need: u64) {
    let (soft, hard) = match current() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot read the open-files limit: {e}");
            return;
        }
    };
    let mut now = soft;
    if let Some(to) = target(soft, hard, need) {
        let new = libc::rlimit {
            rlim_cur: libc::rlim_t::try_from(to).unwrap_or(libc::RLIM_INFINITY),
            rlim_max: libc::rlim_t::try_from(hard).unwrap_or(libc::RLIM_INFINITY),
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            tracing::info!("open-files limit raised from {soft} to {to}");
            now = to;
        } else {
            tracing::warn!(
                "cannot raise the open-files limit from {soft}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    if now < need {
        tracing::warn!(
            "the open-files limit is {now} (hard {hard}) but the caps in [server] can need \
             {need}: under load, queries may get SERVFAIL once it runs out. Raise the hard \
             limit (LimitNOFILE= in the systemd unit, `ulimit -Hn`) or lower \
             max_udp_in_flight / max_tcp_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn limits(cfg: &ServerConfig) -> TcpLimits {
        TcpLimits {
            max_connections: cfg.max_tcp_connections,
            max_per_client: cfg.max_tcp_connections_per_client,
            idle_timeout: cfg.tcp_idle_timeout,
            max_queries_per_connection: cfg.max_tcp_queries_per_connection,
            pipeline: TcpLimits::PIPELINE,
            max_in_flight: cfg.max_udp_in_flight.get(),
            conn_buffer: TcpLimits::CONN_BUFFER,
            total_buffer: TcpLimits::TOTAL_BUFFER,
        }
    }

    #[test]
    fn the_default_caps_need_more_than_1024_files_and_fit_a_hard_limit_of_20000() {
        let cfg = ServerConfig::default();
        let need = files_needed(&cfg, 2, &limits(&cfg));
        // Per address: 2 sockets, 2048 UDP upstream sockets, 256 TCP connections and
        // 2048 TCP upstream sockets (not 256 × 32 = 8192: the listener caps them).
        assert_eq!(need, 2 * (2 + 2048 + 256 + 2048) + 256);
        assert_eq!(need, 8964);
        assert!(need > 1024, "{need}: the old default limit runs out");
        assert!(
            need < 20_000,
            "{need}: warned on hosts with a hard limit of 20000"
        );
    }

    #[test]
    fn few_connections_need_no_more_than_their_pipelines() {
        let mut cfg = ServerConfig {
            max_tcp_connections: NonZeroUsize::new(4).unwrap(),
            max_udp_in_flight: NonZeroUsize::new(100).unwrap(),
            ..ServerConfig::default()
        };
        // 4 connections × 32 pipelined = 128 > 100 in flight: the cap counts.
        assert_eq!(
            files_needed(&cfg, 1, &limits(&cfg)),
            2 + 100 + 4 + 100 + 256
        );
        cfg.max_tcp_connections = NonZeroUsize::new(2).unwrap();
        // 2 × 32 = 64 < 100: the pipelines count.
        assert_eq!(files_needed(&cfg, 1, &limits(&cfg)), 2 + 100 + 2 + 64 + 256);
    }

    #[test]
    fn raised_to_the_need_but_never_past_the_hard_limit() {
        assert_eq!(target(1024, 524_288, 8964), Some(8964));
        assert_eq!(target(1024, 4096, 8964), Some(4096));
        assert_eq!(target(65_536, 65_536, 8964), None);
        assert_eq!(target(4096, 4096, 8964), None, "nothing to gain");
        assert_eq!(target(1024, 20_000, 8964), Some(8964));
    }

    #[test]
    fn raising_works_in_this_process() {
        let need = 2000;
        raise_nofile(need);
        let (soft, hard) = current().unwrap();
        assert!(soft >= need.min(hard), "soft {soft}, hard {hard}");
    }
}
