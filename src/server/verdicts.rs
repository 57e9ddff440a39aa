//! Filter verdicts remembered by name and action table for the life of one snapshot:
//! a name asked for again (most of a household's lookups) costs one hash and one
//! comparison instead of a walk through every list. A snapshot's filter and policy
//! never change (a reload or a household control builds a new snapshot, with an empty
//! memory), so a remembered verdict is the filter's verdict.
//!
//! The memory is direct-mapped: a name has one slot, chosen by its hash, and a new
//! name in a taken slot replaces the one there. No eviction order to keep, and a
//! lock per slot. A slot holds its name (up to [`NAME_MAX`] bytes; longer names are
//! checked every time): no allocation, and no second place in memory to look at.

use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::filter::{Filter, Verdict};
use crate::policy::Action;

/// Slots (a power of two; at most 128 bytes each, 1 MiB in all). The bench's 7,050
/// names, replayed: 81 % remembered with 4,096 slots, 90 % with 8,192 (a household's
/// names in a day are of that order).
const SLOTS: usize = 8192;

/// The longest name a slot holds. Longer ones are rare (a household's names are
/// mostly under 40 bytes) and go to the filter each time.
const NAME_MAX: usize = 64;

/// One remembered verdict: the name, the action table it was checked with, the verdict.
/// The table is named by its address: it belongs to the snapshot's policy, which lives
/// exactly as long as this memory.
struct Slot {
    table: usize,
    len: u8,
    name: [u8; NAME_MAX],
    verdict: Verdict,
}

/// The remembered verdicts of one snapshot.
pub(crate) struct Verdicts {
    slots: Box<[Mutex<Option<Slot>>]>,
}

impl Verdicts {
    pub(crate) fn new() -> Verdicts {
        Verdicts::with_slots(SLOTS)
    }

    /// A memory of `n` slots (a power of two).
    fn with_slots(n: usize) -> Verdicts {
        const { assert!(std::mem::size_of::<Mutex<Option<Slot>>>() <= 128) };
        Verdicts {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// `filter.check(name, actions)`, remembered. `filter` and `actions` must be the
    /// snapshot's own (see [`super::Snapshot::verdict`]).
    pub(super) fn check(&self, filter: &Filter, name: &str, actions: &[Action]) -> Verdict {
        let len = name.len();
        if len > NAME_MAX {
            return filter.check(name, actions);
        }
        let table = actions.as_ptr() as usize;
        let hash = rustc_hash::FxBuildHasher.hash_one((name, table));
        let slot = &self.slots[hash as usize & (self.slots.len() - 1)];
        if let Ok(s) = slot.lock()
            && let Some(s) = s.as_ref()
            && s.table == table
            && s.name[..usize::from(s.len)] == *name.as_bytes()
        {
            return s.verdict.clone();
        }
        let verdict = filter.check(name, actions);
        if let Ok(mut s) = slot.lock() {
            let mut bytes = [0; NAME_MAX];
            bytes[..len].copy_from_slice(name.as_bytes());
            *s = Some(Slot {
                table,
                len: len as u8,
                name: bytes,
                verdict: verdict.clone(),
            });
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::ListFormat;
    use crate::filter::tests::list;

    /// Remembered verdicts are the filter's, for every name and action table, also
    /// once names share a slot and replace each other (three times more names than
    /// slots, each asked for twice in two orders), and for names too long to keep.
    #[test]
    fn remembered_verdicts_are_the_filters() {
        let filter = Filter::build(vec![
            list(
                "first-party.txt",
                "first-party",
                ListFormat::Domains,
                "fbcdn.net\nfacebook.com\n*.edge.facebook.com\n",
            ),
            list(
                "telemetry.txt",
                "telemetry",
                ListFormat::Domains,
                "||sonar*.xx.fbcdn.net^\ngraph.facebook.com\n",
            ),
            list(
                "hosts",
                "pixel",
                ListFormat::Hosts,
                "0.0.0.0 connect.facebook.net\n0.0.0.0 pixel.facebook.com\n",
            ),
            list(
                "allow.txt",
                "allow",
                ListFormat::Domains,
                "www.facebook.com\n",
            ),
        ]);
        // Two tables that disagree on every category: a verdict remembered for one
        // table and served for the other is wrong.
        let n = filter.categories().iter().count();
        let blocks = vec![Action::Block; n];
        let logs = vec![Action::Log; n];
        let names: Vec<String> = (0..3 * SLOTS)
            .map(|i| match i % 6 {
                0 => format!("h{i}.facebook.com"),
                1 => format!("sonar{i}.xx.fbcdn.net"),
                2 => format!("a{i}.edge.facebook.com"),
                3 => "connect.facebook.net".to_string(),
                // Too long to remember, and just short enough.
                4 if i % 12 == 4 => format!("{}.h{i}.facebook.com", "x".repeat(NAME_MAX)),
                4 if i % 24 == 10 => {
                    let tail = format!(".n{i}.facebook.com");
                    format!("{}{tail}", "y".repeat(NAME_MAX - tail.len()))
                }
                4 => format!("site{i}.example"),
                _ => ["www.facebook.com", "graph.facebook.com", "fbcdn.net"][i % 3].to_string(),
            })
            .collect();
        let verdicts = Verdicts::new();
        let mut matched = 0;
        for round in 0..2 {
            for i in 0..names.len() {
                let i = if round == 0 { i } else { names.len() - 1 - i };
                for table in [&blocks, &logs] {
                    let want = filter.check(&names[i], table);
                    matched += usize::from(want.matched.is_some());
                    // Twice: checked (or remembered from before), then remembered.
                    for _ in 0..2 {
                        let got = verdicts.check(&filter, &names[i], table);
                        assert_eq!(got, want, "{}", names[i]);
                    }
                }
            }
        }
        assert!(
            matched > names.len(),
            "the names must match rules: {matched}"
        );

        // One slot: every name and table replaces the last, the same name with the
        // other table too.
        let one = Verdicts::with_slots(1);
        for name in ["pixel.facebook.com", "pixel.facebook.com", "x.fbcdn.net"] {
            for table in [&blocks, &logs, &blocks] {
                let want = filter.check(name, table);
                assert_eq!(one.check(&filter, name, table), want, "{name}");
            }
        }
    }
}
