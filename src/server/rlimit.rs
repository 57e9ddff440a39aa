//! The open-files limit `serve` needs for its caps: raised at start up to the hard
//! limit, with a warning when even that is too low.

use super::ServerConfig;

/// Descriptors besides the listeners' own: the database, the metrics listener, list
/// files, resolv.conf, DoT/DoH connections, stdio.
const MARGIN: u64 = 256;

/// Open files the caps of `cfg` can need with `listeners` addresses bound: per
/// address a UDP socket and a TCP listener, one upstream socket per UDP query in
/// flight, and per TCP connection its socket plus one upstream socket per pipelined
/// query.
pub fn files_needed(cfg: &ServerConfig, listeners: usize, pipeline: usize) -> u64 {
    let per_listener = 2
        + cfg.max_udp_in_flight.get() as u64
        + cfg.max_tcp_connections.get() as u64 * (1 + pipeline as u64);
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
pub fn raise_nofile(need: u64) {
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

    #[test]
    fn the_default_caps_need_more_than_1024_files() {
        let cfg = ServerConfig::default();
        let need = files_needed(&cfg, 2, 32);
        assert_eq!(need, 2 * (2 + 2048 + 256 * 33) + 256);
        assert!(
            need > 1024 && need <= 65536,
            "{need}: the unit's LimitNOFILE"
        );
    }

    #[test]
    fn raised_to_the_need_but_never_past_the_hard_limit() {
        assert_eq!(target(1024, 524_288, 21_252), Some(21_252));
        assert_eq!(target(1024, 4096, 21_252), Some(4096));
        assert_eq!(target(65_536, 65_536, 21_252), None);
        assert_eq!(target(4096, 4096, 21_252), None, "nothing to gain");
    }

    #[test]
    fn raising_works_in_this_process() {
        let need = 2000;
        raise_nofile(need);
        let (soft, hard) = current().unwrap();
        assert!(soft >= need.min(hard), "soft {soft}, hard {hard}");
    }
}
