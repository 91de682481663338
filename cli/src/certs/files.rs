//! Writing secrets and public material to disk with the right permissions.
//!
//! Private keys must never exist on disk, even for an instant, with a mode wider
//! than 0600: every file is created with its final mode by `open(2)` itself
//! (`O_CREAT|O_EXCL` plus the mode), never created first and `chmod`ed later.
//! Replacing an existing file (`--force`) goes through a fresh temporary file in
//! the same directory and an atomic `rename`, so readers see the old or the new
//! content, and the old file's (possibly wider) mode is never reused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Mode of private key files: readable and writable by the owner only.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and other public files.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories this tool creates to hold keys.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory `{}`", dir.display()))
}

/// Fails with an error naming the first of `paths` that already exists (and
/// how many more do), so nothing is written over an existing PKI by accident.
pub(crate) fn refuse_existing<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    // `symlink_metadata` so that a dangling symlink also counts as "exists".
    let mut existing = paths
        .into_iter()
        .filter(|path| fs::symlink_metadata(path).is_ok());
    let Some(first) = existing.next() else {
        return Ok(());
    };
    let more = match existing.count() {
        0 => String::new(),
        n => format!(" (and {n} more of the files to write)"),
    };
    bail!(
        "`{}` already exists{more}; pass --force to overwrite",
        first.display()
    )
}

/// Writes `contents` to `path` with exactly `mode`.
///
/// Without `overwrite`, an existing file is an error (checked atomically by
/// `O_EXCL`, so a concurrent writer cannot be clobbered). With `overwrite`, the
/// file is replaced atomically.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    if !overwrite {
        return match create_new(path, mode) {
            Ok(file) => fill(file, path, contents, mode),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
                "`{}` already exists; pass --force to overwrite it",
                path.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot create `{}`", path.display())),
        };
    }
    let tmp = temp_path(path)?;
    let file =
        create_new(&tmp, mode).with_context(|| format!("cannot create `{}`", tmp.display()))?;
    let written = fill(file, &tmp, contents, mode).and_then(|()| {
        fs::rename(&tmp, path).with_context(|| format!("cannot replace `{}`", path.display()))
    });
    if written.is_err() {
        // Best effort: the temporary file holds nothing the caller still needs.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// A sibling of `path` that does not exist yet, for an atomic replace.
fn temp_path(path: &Path) -> Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("`{}` names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    Ok(path.with_file_name(tmp_name))
}

fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

fn fill(mut file: File, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    // The umask may have narrowed the creation mode (fine for secrets, but certs
    // should be 0644 as documented). Widening to at most `mode` here is safe: the
    // file was never wider than `mode` before this call.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of `{}`", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_with_mode_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_file(&path, b"one", SECRET_MODE, false).unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = write_file(&path, b"two", SECRET_MODE, false).unwrap_err();
        assert!(err.to_string().contains("k.key"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn overwrite_replaces_content_and_narrows_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        write_file(&path, b"new", SECRET_MODE, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn new_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
    }
}
