//! What the viewing surface keeps in `data_dir`, owner-only: the secret session
//! cookies are signed with, and the generated `admin` user's hash when the config
//! names no user. Password hashing (argon2id) is here too; it is slow on purpose,
//! so callers run it off the runtime thread.

use crate::config::schema::{HttpRight, HttpUserConfig};
use anyhow::{Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The session secret's file in `data_dir`.
const SECRET_FILE: &str = "http.secret";
/// The generated admin's hash in `data_dir`.
const ADMIN_FILE: &str = "http-admin.hash";
/// Name of the generated user.
pub const ADMIN: &str = "admin";

/// argon2id cost: 7 MiB and 5 passes, one of OWASP's equivalent settings, the one with the
/// least memory: a board verifies a login without a 19 MiB spike.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

/// An argon2id PHC string of `password`, with a fresh salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random::<16>()?).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let params = argon2::Params::new(MEMORY_KIB, PASSES, 1, None).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let hash = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash` (false when `hash` is unreadable).
pub fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0; N];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the system: {e}"))?;
    Ok(bytes)
}

/// The node's session secret, made on first use.
pub fn session_secret(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => Ok(secret),
        Ok(_) | Err(_) => {
            let secret = random::<32>()?.to_vec();
            write_private(&path, &secret)?;
            Ok(secret)
        }
    }
}

/// The `admin` user of a config with no `[[http.user]]`, and its password when it was just
/// made (to be shown once).
pub fn generated_admin(data_dir: &Path) -> Result<(HttpUserConfig, Option<String>)> {
    let path = data_dir.join(ADMIN_FILE);
    let user = |hash: String| HttpUserConfig {
        name: ADMIN.into(),
        password_hash: hash,
        cameras: vec!["*".into()],
        allow: vec![HttpRight::View, HttpRight::Export, HttpRight::Lock],
    };
    if let Ok(hash) = std::fs::read_to_string(&path)
        && PasswordHash::new(hash.trim()).is_ok()
    {
        return Ok((user(hash.trim().to_string()), None));
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let password: String = random::<16>()?.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    let hash = hash_password(&password)?;
    write_private(&path, format!("{hash}\n").as_bytes())?;
    Ok((user(hash), Some(password)))
}

/// Writes `bytes` to `path`, readable by the owner only, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))?;
    // The rename is durable once the directory is: a power cut must not lose the admin's
    // hash (and show a new password) or the secret (and log everyone out).
    crate::capture::segments::sync_file_and_dir(path).with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(password_matches(&hash, "correct horse"));
        assert!(!password_matches(&hash, "wrong"));
        assert!(!password_matches("not a hash", "correct horse"));
    }
}
