//! Files metaguard writes for others to read (reports, remote list copies): written
//! whole or not at all, with names made safe from untrusted text.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` through a hidden temporary file in the same directory, fsync
/// and rename, so readers never see half a file; the file gets exactly `mode` (the
/// umask does not apply). The directory must exist. On error the temporary is removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have taken bits away; set exactly `mode`.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `text` as a file name: ASCII letters, digits, '.' and '-' kept, anything else '_'.
pub(crate) fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn written_whole_with_exactly_its_mode_and_no_temporary_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.html");
        write_atomic(&p, b"old", 0o644).unwrap();
        write_atomic(&p, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
        // A directory that does not exist: an error, nothing written.
        assert!(write_atomic(&dir.path().join("no/r.html"), b"x", 0o640).is_err());
    }

    #[test]
    fn safe_names_keep_only_plain_characters() {
        assert_eq!(safe_name("2026-W47"), "2026-W47");
        assert_eq!(safe_name("../a b/ü.html"), ".._a_b__.html");
    }
}
