//! Third-party Python clients for the tests: pinned packages from PyPI installed once into a
//! folder of their own (given as `PYTHONPATH`, with `python3 -s` so that nothing else the
//! machine has is seen). Needs `python3` with `pip` and the package index; a test using it
//! fails, never skips, without them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs `pins` (`name==version` each, installed with `--no-deps` so that nothing unpinned
/// comes along; wheels only, nothing compiled) into `under/name`, unless they are there
/// already, and returns the folder. Safe to call from several tests at once.
pub fn packages(under: &Path, name: &str, pins: &[&str]) -> PathBuf {
    let target = under.join(name);
    let marker = target.join("installed.txt");
    let wanted = pins.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return target;
    }
    // Into a fresh folder, moved into place only once complete.
    let partial = target.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
        .args(["--only-binary", ":all:", "--target"])
        .arg(&partial)
        .args(pins)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "pip could not install {pins:?}");
    std::fs::write(partial.join("installed.txt"), &wanted).unwrap();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&target);
        let _ = std::fs::rename(&partial, &target);
    }
    let _ = std::fs::remove_dir_all(&partial);
    target
}

/// The packages of `smart_client.py` (the SMART App Launch and Backend Services client, which
/// also hands other tests a backend service's token), every dependency pinned.
pub const SMART_CLIENT_PINS: &[&str] = &[
    "requests-oauthlib==2.0.0",
    "oauthlib==3.2.2",
    "requests==2.32.3",
    "urllib3==2.2.3",
    "idna==3.10",
    "certifi==2024.8.30",
    "charset-normalizer==3.4.0",
    // 2.10 or later: older releases export an EC key's x or y without its leading zero bytes
    // (about one P-384 key in 128), a JWK that RFC 7518 §6.2.1.2 forbids and the server refuses.
    "PyJWT==2.10.1",
    "cryptography==43.0.3",
    "cffi==1.17.1",
    "pycparser==2.22",
];
