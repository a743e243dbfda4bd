//! Writing config files so that a crash at any moment leaves either the old file or the new one.
//!
//! The new text goes to a temporary file in the same folder, is flushed to disk, and is renamed over
//! the old one (rename is atomic within a file system); the old version is kept as `<name>.bak`. Files
//! are created with mode 0600: they hold API keys and tokens. A config file that is a symlink (a dotfiles
//! repository, a mounted secret) stays one: the write goes to the file it points to, and the temporary
//! file and the backup sit beside that file, so the rename stays within one file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Symlinks followed before giving up with ELOOP, as the kernel does (`MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, true)
}

/// As [`write_atomically`], without the `.bak`: for files whose old contents must not stay behind
/// (forgotten OAuth tokens).
pub fn write_atomically_without_backup(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, false)
}

fn replace(path: &Path, contents: &[u8], backup: bool) -> io::Result<()> {
    let path = &follow_links(path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config".into());
    // Unique per write, so two saves at once never share (and truncate) one temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    if backup && path.exists() {
        // A copy, not a rename: the config file itself must exist at every moment.
        fs::copy(path, dir.join(format!("{name}.bak")))?;
    }
    fs::rename(&temp, path)?;
    // Make the rename itself durable.
    File::open(&dir)?.sync_all()
}

/// The file a path names once every symlink on it (the last component's, and its targets') is followed;
/// the path itself when it is no symlink or does not exist yet. A dangling link names its target, which
/// the write then creates.
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                // A relative target is relative to the link's folder; join keeps an absolute one as it is.
                path = path.parent().unwrap_or(Path::new("")).join(target);
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_new_text_keeps_a_backup_and_restricts_permissions() {
        let dir = std::env::temp_dir().join(format!("mcp-files-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::read_to_string(dir.join("c.json.bak")).unwrap(), "one");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> =
            fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-")).collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_file_stays_a_link_and_its_target_is_replaced_with_the_backup_beside_it() {
        let dir = std::env::temp_dir().join(format!("mcp-files-link-test-{}", std::process::id()));
        let (links, targets) = (dir.join("links"), dir.join("targets"));
        fs::create_dir_all(&links).unwrap();
        fs::create_dir_all(&targets).unwrap();
        fs::write(targets.join("real.json"), "one").unwrap();
        // A chain: c.json -> relative link -> absolute target.
        std::os::unix::fs::symlink("../targets/middle.json", links.join("c.json")).unwrap();
        std::os::unix::fs::symlink(targets.join("real.json"), targets.join("middle.json")).unwrap();
        write_atomically(&links.join("c.json"), b"two").unwrap();
        assert!(fs::symlink_metadata(links.join("c.json")).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(targets.join("middle.json")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(targets.join("real.json")).unwrap(), "two");
        assert_eq!(fs::read_to_string(targets.join("real.json.bak")).unwrap(), "one");
        assert!(!links.join("c.json.bak").exists(), "the backup belongs beside the target");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("mcp-files-loop-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("b.json", dir.join("a.json")).unwrap();
        std::os::unix::fs::symlink("a.json", dir.join("b.json")).unwrap();
        let error = write_atomically(&dir.join("a.json"), b"x").unwrap_err();
        assert!(error.to_string().contains("too many levels of symbolic links"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
