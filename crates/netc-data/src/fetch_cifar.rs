//! Downloading CIFAR-10: its binary archive from the data set's page, verified against the
//! published MD5, and the seven files of its `cifar-10-batches-bin/` folder extracted into
//! place, each through a temporary file renamed over its final name.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;

use flate2::bufread::GzDecoder;
use md5::{Digest, Md5};

use crate::cifar::cifar10_files;
use crate::error::OfflineHint;
use crate::fetch::{agent, download, first_mirror, mirrors_from, Failure, FetchAction, FetchedFile, TempFile};
use crate::idx::hex;
use crate::DataError;

/// Where the binary archive is published; overridden by `NETC_CIFAR10_MIRROR` (a comma- or
/// space-separated list of base URLs) for private mirrors and tests.
pub const CIFAR10_MIRRORS: [&str; 1] = ["https://www.cs.toronto.edu/~kriz/"];
/// The archive's name on the mirror.
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// The MD5 the data set's page publishes for the archive.
pub const CIFAR10_ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The folder inside the archive that holds the files.
const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";
/// The archive is 170 MB; a body far larger is a misbehaving server.
const MAX_ARCHIVE: u64 = 256 << 20;
/// The largest member extracted (a batch is 30 730 000 bytes).
const MAX_MEMBER: u64 = 64 << 20;

/// Downloads CIFAR-10 into `dest_dir` (created if needed) unless it already holds every file:
/// the archive is verified against [`CIFAR10_ARCHIVE_MD5`], its seven files are extracted, and
/// the archive is removed. On failure the error says which files to put where by hand.
pub fn fetch_cifar10(dest_dir: &Path, progress: bool) -> Result<Vec<FetchedFile>, DataError> {
    let mirrors = mirrors_from(std::env::var("NETC_CIFAR10_MIRROR").ok().as_deref(), &CIFAR10_MIRRORS);
    fetch_archive(&agent(), dest_dir, &mirrors, CIFAR10_ARCHIVE_MD5, progress)
}

fn fetch_archive(
    agent: &ureq::Agent,
    dest: &Path,
    mirrors: &[String],
    md5: &str,
    progress: bool,
) -> Result<Vec<FetchedFile>, DataError> {
    let files = cifar10_files();
    if files.iter().all(|name| dest.join(name).is_file()) {
        return Ok(files
            .iter()
            .map(|name| FetchedFile { path: dest.join(name), action: FetchAction::AlreadyPresent })
            .collect());
    }
    fs::create_dir_all(dest).map_err(|e| DataError::io(dest, "creating folder", e))?;
    let archive = dest.join(CIFAR10_ARCHIVE);
    let verify = |path: &Path| match md5_of(path) {
        Ok(found) if found == md5 => Ok(()),
        Ok(found) => Err(Failure::Remote(format!("MD5 of the archive is {found}, expected {md5}"))),
        Err(e) => Err(Failure::Local(e)),
    };
    let (source, attempts) = first_mirror(mirrors.iter().map(|base| format!("{base}{CIFAR10_ARCHIVE}")), |url| {
        download(agent, url, &archive, MAX_ARCHIVE, progress, verify)
    })?;
    let Some(url) = source else {
        let offline = OfflineHint {
            dir: dest.to_path_buf(),
            download: format!("{}{CIFAR10_ARCHIVE} (MD5 {md5})", CIFAR10_MIRRORS[0]),
            files: files.iter().map(|name| format!("{ARCHIVE_FOLDER}/{name}")).collect(),
        };
        return Err(DataError::Download { file: CIFAR10_ARCHIVE.into(), attempts, offline });
    };
    let extracted = extract(&archive, dest, &files);
    // The archive is only a means to the files; a failed extraction keeps nothing of it either.
    let _ = fs::remove_file(&archive);
    extracted?;
    Ok(files
        .iter()
        .map(|name| FetchedFile { path: dest.join(name), action: FetchAction::Downloaded { url: url.clone() } })
        .collect())
}

/// MD5 (lowercase hex) of a file's bytes.
fn md5_of(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
    let mut hasher = Md5::new();
    io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(path, "reading", e))?;
    Ok(hex(&hasher.finalize()))
}

/// Extracts the members `ARCHIVE_FOLDER/NAME` of a gzipped tar archive into `dest` for every
/// name of `wanted`, and nothing else: no other path of the archive is ever written.
fn extract(archive: &Path, dest: &Path, wanted: &[&str]) -> Result<(), DataError> {
    let file = File::open(archive).map_err(|e| DataError::io(archive, "opening", e))?;
    let mut tar = GzDecoder::new(BufReader::new(file));
    let bad = |why: String| DataError::Archive { path: archive.to_path_buf(), why };
    let read_error = |e: io::Error| bad(format!("cannot be decompressed: {e}"));
    let mut found: Vec<&str> = Vec::new();
    loop {
        let mut header = [0u8; 512];
        if !read_block(&mut tar, &mut header).map_err(read_error)? || header.iter().all(|&b| b == 0) {
            break;
        }
        let name = member_name(&header);
        let size = octal(&header[124..136]).ok_or_else(|| bad(format!("member `{name}` has a corrupt size field")))?;
        let regular = matches!(header[156], b'0' | 0);
        let wanted_name = name
            .strip_prefix(ARCHIVE_FOLDER)
            .and_then(|n| n.strip_prefix('/'))
            .and_then(|n| wanted.iter().find(|w| **w == n));
        let mut body = (&mut tar).take(size);
        match wanted_name {
            Some(&file) if regular => {
                if size > MAX_MEMBER {
                    return Err(bad(format!("member `{name}` is {size} bytes, more than a CIFAR-10 file holds")));
                }
                let target = dest.join(file);
                let mut temp = TempFile::create(&target)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = body.read(&mut buf).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    temp.write_all(&buf[..n])?;
                }
                if body.limit() > 0 {
                    return Err(bad(format!("truncated inside member `{name}`")));
                }
                temp.sync()?;
                temp.persist(&target)?;
                found.push(file);
            }
            _ => {
                let skipped = io::copy(&mut body, &mut io::sink()).map_err(read_error)?;
                if skipped < size {
                    return Err(bad(format!("truncated inside member `{name}`")));
                }
            }
        }
        // Members are padded to whole blocks.
        let padding = (512 - size % 512) % 512;
        io::copy(&mut (&mut tar).take(padding), &mut io::sink()).map_err(read_error)?;
    }
    let missing: Vec<&str> = wanted.iter().filter(|w| !found.contains(w)).copied().collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "holds no {}",
            missing.iter().map(|m| format!("{ARCHIVE_FOLDER}/{m}")).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

/// Fills one 512-byte block; `false` at a clean end of the stream.
fn read_block(input: &mut impl Read, block: &mut [u8; 512]) -> io::Result<bool> {
    let mut got = 0;
    while got < block.len() {
        match input.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A member's path: the ustar prefix (if any), a slash, and the name.
fn member_name(header: &[u8; 512]) -> String {
    let field = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(&header[..100]);
    let prefix = if &header[257..262] == b"ustar" { field(&header[345..500]) } else { String::new() };
    let joined = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
    joined.trim_start_matches("./").to_string()
}

/// A tar numeric field: octal digits, padded with spaces or NULs.
fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{cifar_records, gzip, tar, Reply, Server, CIFAR_NAMES};
    use crate::{write_cifar10, Splits};
    use std::collections::HashMap;

    /// A gzipped archive laid out as the real one, holding a small set, and its MD5.
    fn archive(leave_out: Option<&str>) -> (Vec<u8>, String) {
        let source = tempfile::tempdir().unwrap();
        write_cifar10(source.path(), &cifar_records(10, 0), &cifar_records(4, 50), &CIFAR_NAMES).unwrap();
        let contents: Vec<(String, Vec<u8>)> = cifar10_files()
            .into_iter()
            .filter(|name| Some(*name) != leave_out)
            .map(|name| (format!("{ARCHIVE_FOLDER}/{name}"), std::fs::read(source.path().join(name)).unwrap()))
            .collect();
        let mut members: Vec<(&str, &[u8])> = vec![("cifar-10-batches-bin/readme.html", b"<html>")];
        members.extend(contents.iter().map(|(n, c)| (n.as_str(), &c[..])));
        let bytes = gzip(&tar(&members));
        let md5 = hex(&Md5::digest(&bytes));
        (bytes, md5)
    }

    #[test]
    fn downloads_verifies_extracts_and_then_skips() {
        let (bytes, md5) = archive(None);
        let mut routes = HashMap::new();
        routes.insert(format!("/good/{CIFAR10_ARCHIVE}"), Reply::ok(bytes));
        let server = Server::start(routes, 2);
        let mirrors = vec![format!("{}/bad/", server.base), format!("{}/good/", server.base)];
        let dest = tempfile::tempdir().unwrap();
        let dest = dest.path().join("cifar10");
        let fetched = fetch_archive(&ureq::Agent::new(), &dest, &mirrors, &md5, false).unwrap();
        assert_eq!(fetched.len(), 7);
        assert!(fetched.iter().all(|f| matches!(&f.action, FetchAction::Downloaded { url } if url.contains("/good/"))));
        let set = Splits::load_cifar10(&dest).unwrap();
        assert_eq!((set.train.count, set.test.count), (10, 4));
        // Only the data set's files are left: no archive, no readme, no temporary file.
        let mut left: Vec<String> =
            std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut expected: Vec<String> = cifar10_files().into_iter().map(String::from).collect();
        expected.sort();
        assert_eq!(left, expected);
        let again = fetch_archive(&ureq::Agent::new(), &dest, &mirrors, &md5, false).unwrap();
        assert!(again.iter().all(|f| f.action == FetchAction::AlreadyPresent));
        assert_eq!(server.finish().len(), 2, "the second fetch asks for nothing");
    }

    #[test]
    fn a_wrong_checksum_keeps_nothing_and_says_what_goes_where() {
        let (bytes, _) = archive(None);
        let mut routes = HashMap::new();
        routes.insert(format!("/good/{CIFAR10_ARCHIVE}"), Reply::ok(bytes));
        let server = Server::start(routes, 1);
        let dest = tempfile::tempdir().unwrap();
        let mirrors = vec![format!("{}/good/", server.base)];
        let err = fetch_archive(&ureq::Agent::new(), dest.path(), &mirrors, CIFAR10_ARCHIVE_MD5, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("expected {CIFAR10_ARCHIVE_MD5}")), "{msg}");
        assert!(
            msg.contains("without network: download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
            "{msg}"
        );
        assert!(msg.contains("cifar-10-batches-bin/data_batch_1.bin") && msg.contains("batches.meta.txt"), "{msg}");
        assert!(msg.contains(&format!("into {}", dest.path().display())), "{msg}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
        server.finish();
    }

    #[test]
    fn an_archive_without_a_file_is_refused_and_removed() {
        let (bytes, md5) = archive(Some("test_batch.bin"));
        let mut routes = HashMap::new();
        routes.insert(format!("/good/{CIFAR10_ARCHIVE}"), Reply::ok(bytes));
        let server = Server::start(routes, 1);
        let dest = tempfile::tempdir().unwrap();
        let mirrors = vec![format!("{}/good/", server.base)];
        let err = fetch_archive(&ureq::Agent::new(), dest.path(), &mirrors, &md5, false).unwrap_err();
        assert!(
            matches!(&err, DataError::Archive { why, .. } if why == "holds no cifar-10-batches-bin/test_batch.bin"),
            "{err:?}"
        );
        assert!(!dest.path().join(CIFAR10_ARCHIVE).exists());
        server.finish();
    }

    #[test]
    fn tar_fields() {
        assert_eq!(octal(b"00000001750\0"), Some(1000));
        assert_eq!(octal(b"   \0"), Some(0));
        assert_eq!(octal(b"12x"), None);
    }
}
