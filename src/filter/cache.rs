//! The compiled-list cache: the compact form of each large list, written to
//! `<state_dir>/compiled/<sha256 of the list bytes>.mgcl` and memory-mapped at start,
//! so a start or reload with unchanged lists does not parse them again.
//!
//! A file is a header (magic `MGCL`, version, the lengths of its two parts, and the
//! SHA-256 of both), a metadata part (what the list declares and compiling it gave:
//! little-endian integers and length-prefixed strings), then the compiled maps (`compact`;
//! version 2: split by last byte into parts). It is written to a temporary file and
//! renamed. A file that is truncated,
//! corrupt, of another version or compiled for another format setting is ignored with a
//! warning and rebuilt, never trusted: the checksum is verified before the fst is read.
//! A list already mapped by the running filter is shared, not mapped twice, so a reload
//! that keeps it costs no memory for it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::compact::{Bytes, Compiled};
use super::parse::ListFormat;

const MAGIC: &[u8; 4] = b"MGCL";
const VERSION: u32 = 2;
/// magic, version, JSON length, fst length, SHA-256.
const HEADER: usize = 4 + 4 + 4 + 8 + 32;

/// The SHA-256 of a list's bytes: the name of its cache file.
pub(crate) type Hash = [u8; 32];

/// What a cache file says besides the fst (encoded by hand rather than with serde_json:
/// less code under the 8 MiB binary gate).
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The format setting the list was compiled under (`auto` and the rest).
    pub(crate) requested: ListFormat,
    /// The format it was read as.
    pub(crate) format: ListFormat,
    pub(crate) rules: usize,
    pub(crate) bad_lines: usize,
    pub(crate) title: Option<String>,
    pub(crate) sources: Option<String>,
    pub(crate) reviewed: Option<String>,
    /// Pattern rules with their line, as written.
    pub(crate) patterns: Vec<(u32, String)>,
}

fn format_byte(f: ListFormat) -> u8 {
    match f {
        ListFormat::Auto => 0,
        ListFormat::Hosts => 1,
        ListFormat::Domains => 2,
        ListFormat::Abp => 3,
    }
}

fn byte_format(b: u8) -> Option<ListFormat> {
    Some(match b {
        0 => ListFormat::Auto,
        1 => ListFormat::Hosts,
        2 => ListFormat::Domains,
        3 => ListFormat::Abp,
        _ => return None,
    })
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![format_byte(self.requested), format_byte(self.format)];
        out.extend_from_slice(&(self.rules as u64).to_le_bytes());
        out.extend_from_slice(&(self.bad_lines as u64).to_le_bytes());
        let text = |out: &mut Vec<u8>, s: Option<&str>| match s {
            Some(s) => {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        };
        text(&mut out, self.title.as_deref());
        text(&mut out, self.sources.as_deref());
        text(&mut out, self.reviewed.as_deref());
        out.extend_from_slice(&(self.patterns.len() as u32).to_le_bytes());
        for (line, p) in &self.patterns {
            out.extend_from_slice(&line.to_le_bytes());
            text(&mut out, Some(p));
        }
        out
    }

    fn decode(mut b: &[u8]) -> Option<Meta> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = b.split_at_checked(n)?;
            *b = rest;
            Some(head)
        }
        fn u32_of(b: &mut &[u8]) -> Option<u32> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
        }
        fn u64_of(b: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
        }
        fn text(b: &mut &[u8]) -> Option<Option<String>> {
            let n = u32_of(b)?;
            if n == u32::MAX {
                return Some(None);
            }
            let s = take(b, usize::try_from(n).ok()?)?;
            Some(Some(std::str::from_utf8(s).ok()?.to_string()))
        }
        let formats = take(&mut b, 2)?;
        let requested = byte_format(formats[0])?;
        let format = byte_format(formats[1])?;
        let rules = usize::try_from(u64_of(&mut b)?).ok()?;
        let bad_lines = usize::try_from(u64_of(&mut b)?).ok()?;
        let title = text(&mut b)?;
        let sources = text(&mut b)?;
        let reviewed = text(&mut b)?;
        let n = u32_of(&mut b)?;
        let mut patterns = Vec::new();
        for _ in 0..n {
            let line = u32_of(&mut b)?;
            patterns.push((line, text(&mut b)??));
        }
        b.is_empty().then_some(Meta {
            requested,
            format,
            rules,
            bad_lines,
            title,
            sources,
            reviewed,
            patterns,
        })
    }
}

/// Hash a file by streaming it (64 KiB at a time, never the whole list in memory).
pub(crate) fn hash_file(path: &Path) -> std::io::Result<Hash> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(digest(ctx))
}

/// The hash of a list held in memory.
pub(crate) fn hash_bytes(bytes: &[u8]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(bytes);
    digest(ctx)
}

fn digest(ctx: ring::digest::Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn path_of(dir: &Path, hash: &Hash) -> PathBuf {
    dir.join(format!("{}.mgcl", hex(hash)))
}

/// Cache files mapped by this process, by list hash: a reload shares them.
fn live() -> &'static Mutex<HashMap<Hash, Weak<memmap2::Mmap>>> {
    static LIVE: std::sync::OnceLock<Mutex<HashMap<Hash, Weak<memmap2::Mmap>>>> =
        std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// The compiled list for `hash` under the `requested` format, if the cache has a good
/// one. A bad file is reported and left to be rewritten.
pub(crate) fn load(dir: &Path, hash: &Hash, requested: ListFormat) -> Option<(Meta, Bytes)> {
    load_with(dir, hash, requested, true)
}

/// `load`; `verify` false skips the checksum of a file this process has just written
/// (its bytes are the ones it compiled: hashing them again cost the cold start time).
fn load_with(
    dir: &Path,
    hash: &Hash,
    requested: ListFormat,
    verify: bool,
) -> Option<(Meta, Bytes)> {
    let path = path_of(dir, hash);
    let shared = live()
        .lock()
        .ok()
        .and_then(|m| m.get(hash).and_then(Weak::upgrade));
    let (map, fresh) = match shared {
        Some(map) => (map, false),
        None => {
            let file = std::fs::File::open(&path).ok()?;
            // SAFETY: the file is ours, written once under a temporary name and renamed
            // into place, never modified afterwards (a rebuild replaces it by rename).
            // Its bytes are checked against the header's SHA-256 before use.
            let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
            (Arc::new(map), true)
        }
    };
    match parse(&map, requested, fresh && verify) {
        Ok((meta, start, end)) => {
            if let Ok(mut live) = live().lock() {
                live.retain(|_, w| w.strong_count() > 0);
                live.insert(*hash, Arc::downgrade(&map));
            }
            Some((meta, Bytes::mapped(map, start, end)))
        }
        Err(why) => {
            tracing::warn!(path = %path.display(), "compiled list cache ignored ({why}); rebuilding it");
            None
        }
    }
}

/// Check a mapped cache file; the JSON part and the fst's range.
fn parse(
    map: &[u8],
    requested: ListFormat,
    verify: bool,
) -> Result<(Meta, usize, usize), &'static str> {
    let h = map.get(..HEADER).ok_or("truncated header")?;
    if &h[..4] != MAGIC {
        return Err("not a compiled list");
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&h[r]);
        u64::from_le_bytes(b)
    };
    if word(4..8) != u64::from(VERSION) {
        return Err("another version");
    }
    let meta_len = usize::try_from(word(8..12)).map_err(|_| "bad length")?;
    let fst_len = usize::try_from(word(12..20)).map_err(|_| "bad length")?;
    let end = HEADER
        .checked_add(meta_len)
        .and_then(|n| n.checked_add(fst_len))
        .ok_or("bad length")?;
    if map.len() != end {
        return Err("truncated or too long");
    }
    if verify && hash_bytes(&map[HEADER..]) != h[20..HEADER] {
        return Err("checksum mismatch");
    }
    let meta = Meta::decode(&map[HEADER..HEADER + meta_len]).ok_or("bad metadata")?;
    if meta.requested != requested {
        return Err("compiled for another format setting");
    }
    Ok((meta, HEADER + meta_len, end))
}

/// Remove the cache files of lists no longer loaded (a list that changed leaves its old
/// compiled form behind). A running filter that still maps one keeps its pages.
pub(crate) fn prune(dir: &Path, keep: &[Hash]) {
    let keep: Vec<String> = keep.iter().map(|h| format!("{}.mgcl", hex(h))).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".mgcl") && !keep.iter().any(|k| *k == name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Write `compiled` for `hash` and map it back. `None` (with a warning) when the
/// directory cannot be written: the caller keeps the fst in memory.
pub(crate) fn store(dir: &Path, hash: &Hash, meta: &Meta, compiled: &Compiled) -> Option<Bytes> {
    let path = path_of(dir, hash);
    match write(dir, &path, meta, &compiled.fst) {
        Ok(()) => load_with(dir, hash, meta.requested, false).map(|(_, b)| b),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled list cache; keeping it in memory");
            None
        }
    }
}

fn write(dir: &Path, path: &Path, meta: &Meta, fst: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let head = meta.encode();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&head);
    ctx.update(fst);
    let sum = digest(ctx);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}-{seq}.tmp", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&VERSION.to_le_bytes())?;
        f.write_all(&(head.len() as u32).to_le_bytes())?;
        f.write_all(&(fst.len() as u64).to_le_bytes())?;
        f.write_all(&sum)?;
        f.write_all(&head)?;
        f.write_all(fst)?;
        // No fsync: a file cut short by a crash fails the checksum of its next load
        // and is rebuilt, so durability is not needed and the cold start does not wait.
        f.flush()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            requested: ListFormat::Auto,
            format: ListFormat::Hosts,
            rules: 2,
            bad_lines: 0,
            title: Some("t".into()),
            sources: None,
            reviewed: None,
            patterns: vec![(3, "||a*.b.example^".into())],
        }
    }

    #[test]
    fn meta_round_trip_and_truncation() {
        let b = meta().encode();
        let m = Meta::decode(&b).unwrap();
        assert_eq!((m.title.as_deref(), m.patterns.len()), (Some("t"), 1));
        for n in 0..b.len() {
            assert!(Meta::decode(&b[..n]).is_none());
        }
    }

    #[test]
    fn round_trip_and_bad_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = super::super::compact::compile_text(
            "0.0.0.0 a.example\n0.0.0.0 b.example\n",
            ListFormat::Hosts,
        );
        let hash = hash_bytes(b"list");
        let bytes = store(dir.path(), &hash, &meta(), &c).expect("stored");
        assert_eq!(bytes.as_ref(), &c.fst[..]);
        drop(bytes);
        assert!(load(dir.path(), &hash, ListFormat::Auto).is_some());
        assert!(load(dir.path(), &hash, ListFormat::Hosts).is_none());
        let path = path_of(dir.path(), &hash);
        let good = std::fs::read(&path).unwrap();
        // Truncated, one flipped byte, empty, garbage: ignored, no panic.
        for bad in [
            good[..good.len() - 3].to_vec(),
            {
                let mut b = good.clone();
                let n = b.len() - 5;
                b[n] ^= 0x40;
                b
            },
            vec![],
            b"MGCL\x01\0\0\0garbage".to_vec(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(load(dir.path(), &hash, ListFormat::Auto).is_none());
        }
    }
}
