//! The open TCP connections of one listener, counted in total and per client address.
//! At a cap the longest-idle connection is closed to make room (RFC 7766 §6.2.3), so
//! neither one address nor a set of addresses can lock new clients out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// When a connection last made progress (a query read or an answer written), in
/// milliseconds since the table was made. Updated lock-free by the connection.
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Progress now.
    pub(crate) fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }
}

/// One open connection as the slots see it: its client, its activity, how to close it.
struct OpenConn {
    ip: IpAddr,
    activity: Arc<Activity>,
    /// Cancelled to close the connection (evicted).
    close: CancellationToken,
}

/// The open connections and the count per client, under one lock.
#[derive(Default)]
struct SlotTable {
    next_id: u64,
    conns: HashMap<u64, OpenConn>,
    per_client: HashMap<IpAddr, usize>,
}

impl SlotTable {
    /// Forget connection `id`; whether it was still here.
    fn remove(&mut self, id: u64) -> Option<OpenConn> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.ip);
            }
        }
        Some(e)
    }

    /// The connection (of `ip` only, when given) idle the longest.
    fn longest_idle(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| ip.is_none_or(|ip| e.ip == ip))
            .min_by_key(|(id, e)| (e.activity.last(), **id))
            .map(|(id, _)| *id)
    }
}

/// The connection table of one listener.
pub(crate) struct Slots {
    epoch: Instant,
    max_total: usize,
    max_per_client: usize,
    table: Mutex<SlotTable>,
}

/// A connection's place in the table; gives it back on drop.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub(crate) activity: Arc<Activity>,
    /// Cancelled when the connection is evicted to make room for a new one.
    pub(crate) close: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.slots.table.lock() {
            t.remove(self.id);
        }
    }
}

impl Slots {
    pub(crate) fn new(max_total: NonZeroUsize, max_per_client: NonZeroUsize) -> Arc<Slots> {
        Arc::new(Slots {
            epoch: Instant::now(),
            max_total: max_total.get(),
            max_per_client: max_per_client.get(),
            table: Mutex::new(SlotTable::default()),
        })
    }

    /// A slot for a new connection from `ip`, and how many connections were closed to
    /// make room for it (0 or 1). The victim is the longest-idle connection of `ip`
    /// when `ip` is at its cap, else the longest-idle of all when the total is.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> (Option<Slot>, u64) {
        let Ok(mut t) = self.table.lock() else {
            return (None, 0);
        };
        let mine = t.per_client.get(&ip).copied().unwrap_or(0);
        let victim = if mine >= self.max_per_client {
            t.longest_idle(Some(ip))
        } else if t.conns.len() >= self.max_total {
            t.longest_idle(None)
        } else {
            None
        };
        let evicted = match victim.and_then(|id| t.remove(id)) {
            Some(e) => {
                e.close.cancel();
                1
            }
            None => 0,
        };
        t.next_id += 1;
        let id = t.next_id;
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            last_ms: AtomicU64::new(0),
        });
        activity.touch();
        let close = CancellationToken::new();
        t.conns.insert(
            id,
            OpenConn {
                ip,
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        *t.per_client.entry(ip).or_default() += 1;
        let slot = Slot {
            slots: self.clone(),
            id,
            activity,
            close,
        };
        (Some(slot), evicted)
    }

    /// Open connections (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.conns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn n(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn the_longest_idle_connection_of_a_client_at_its_cap_is_evicted() {
        let slots = Slots::new(n(10), n(2));
        let (a, _) = slots.take(ip("10.0.0.1"));
        let (b, _) = slots.take(ip("10.0.0.1"));
        let (a, b) = (a.unwrap(), b.unwrap());
        std::thread::sleep(std::time::Duration::from_millis(3));
        // `a` is busy again: `b` is now the idle one.
        a.activity.touch();
        let (other, n) = slots.take(ip("10.0.0.2"));
        let other = other.unwrap();
        assert_eq!(n, 0, "another client is under its cap");
        let (c, n) = slots.take(ip("10.0.0.1"));
        assert_eq!(n, 1);
        assert!(b.close.is_cancelled() && !a.close.is_cancelled());
        assert!(!other.close.is_cancelled());
        assert_eq!(slots.len(), 3);
        drop(b);
        assert_eq!(slots.len(), 3, "an evicted slot is not given back twice");
        drop(c);
        assert_eq!(slots.len(), 2);
        drop((a, other));
        assert_eq!(slots.len(), 0);
    }

    #[test]
    fn at_the_total_cap_the_longest_idle_of_all_is_evicted() {
        let slots = Slots::new(n(3), n(3));
        let held: Vec<Slot> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|s| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                slots.take(ip(s)).0.unwrap()
            })
            .collect();
        let (_new, n) = slots.take(ip("10.0.0.4"));
        assert_eq!(n, 1);
        assert!(held[0].close.is_cancelled());
        assert!(!held[1].close.is_cancelled() && !held[2].close.is_cancelled());
        assert_eq!(slots.len(), 3);
    }
}
