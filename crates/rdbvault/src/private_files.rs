//! Everything rdbvault keeps on disk is its users' data or their secrets:
//! the metadata database (Redis passwords, link keys), `node_id`, the
//! credentials file, and every backup in the local store. None of it is for
//! other local users: files are 0600 and directories 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes every file this process creates from now on private (umask 077:
/// SQLite's database and journals, staging and backup files, `node_id`),
/// and tightens what an earlier version or an operator left more open
/// under `data_dir`; returns how many entries it changed.
pub fn make_private(data_dir: &Path) -> std::io::Result<usize> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    tighten(data_dir)
}

fn tighten(path: &Path) -> std::io::Result<usize> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        // Not followed: what it points to is not rdbvault's to change.
        return Ok(0);
    }
    let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
    let mode = meta.permissions().mode() & 0o777;
    let mut changed = 0;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & wanted))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            changed += tighten(&entry?.path())?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_entries_are_tightened_and_symlinks_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open_dir = dir.path().join("objects");
        std::fs::create_dir(&open_dir).expect("dir");
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = open_dir.join("backup.rdb");
        std::fs::write(&file, b"x").expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let outside = tempfile::NamedTempFile::new().expect("file");
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");

        assert!(tighten(dir.path()).expect("tighten") >= 2);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&open_dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            mode(outside.path()),
            0o644,
            "a symlink's target is not touched"
        );
        assert_eq!(tighten(dir.path()).expect("again"), 0);
    }
}
