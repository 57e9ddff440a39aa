//! Login and sessions: the admin password's argon2 hash in the state directory (made
//! on first start, changed by `metaguard web password`), in-memory sessions with random
//! 256-bit ids and a CSRF token each, and a rate limit on login attempts.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use governor::{Quota, RateLimiter};
use rand::Rng;

use super::WebError;

/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 64;

/// 32 random bytes as 64 hex digits.
pub(super) fn token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random password of 20 letters and digits (about 119 bits).
pub(crate) fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hash(password: &str) -> Result<String, WebError> {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| WebError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Hash(e.to_string()))
}

/// Write `text` to `path` with mode 0600 (temporary file, then rename).
fn write_secret(path: &Path, text: &str) -> Result<(), WebError> {
    let err = |source| WebError::PasswordFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Set a new admin password (`metaguard web password`); a running `serve` uses it at
/// the next login.
pub fn set_password(path: &Path, password: &str) -> Result<(), WebError> {
    write_secret(path, &hash(password)?)
}

/// The stored hash; when there is none, a new random password is made and stored,
/// and returned too (to be shown once).
pub(super) fn load_or_create(path: &Path) -> Result<(String, Option<String>), WebError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok((s.trim().to_string(), None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let password = new_password();
            let h = hash(&password)?;
            write_secret(path, &h)?;
            Ok((h, Some(password)))
        }
        Err(source) => Err(WebError::PasswordFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `password` matches the hash stored at `path` (read at each login, so a
/// new password applies at once). Slow on purpose (argon2): call it off the runtime.
pub(super) fn verify(path: &Path, password: &str) -> bool {
    let Ok(stored) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(parsed) = PasswordHash::new(stored.trim()) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Equal strings, compared in time that depends only on their lengths.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The token every form of this session carries.
    pub(super) csrf: String,
    expires: Instant,
}

type KeyedLimiter = RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;
type GlobalLimiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

/// The sessions and the login limits.
pub(super) struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
    per_client: KeyedLimiter,
    global: GlobalLimiter,
}

impl Auth {
    pub(super) fn new(lifetime: Duration) -> Auth {
        // A client may try 5 passwords at once, then one every 12 s; all clients
        // together 20 at once, then one a second (argon2 costs each a few ms of CPU).
        let per = Quota::with_period(Duration::from_secs(12))
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(const { NonZeroU32::new(5).unwrap() });
        let all =
            Quota::per_second(NonZeroU32::MIN).allow_burst(const { NonZeroU32::new(20).unwrap() });
        Auth {
            sessions: Mutex::new(HashMap::new()),
            lifetime,
            per_client: RateLimiter::keyed(per),
            global: RateLimiter::direct(all),
        }
    }

    /// How long a session lasts.
    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whether a login attempt from `ip` may be checked now (each attempt counts).
    pub(super) fn may_try(&self, ip: IpAddr) -> bool {
        self.per_client.check_key(&ip).is_ok() && self.global.check().is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session: (id, session).
    pub(super) fn create(&self) -> (String, Session) {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        let s = Session {
            csrf: token(),
            expires: now + self.lifetime,
        };
        let id = token();
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session of this id.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// End a session.
    pub(super) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_password_is_stored_hashed_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-password");
        let (h, first) = load_or_create(&path).unwrap();
        let pw = first.expect("a new password");
        assert!(h.starts_with("$argon2"), "{h}");
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&pw));
        assert!(verify(&path, &pw));
        assert!(!verify(&path, "wrong"));
        assert!(load_or_create(&path).unwrap().1.is_none());
        set_password(&path, "another one").unwrap();
        assert!(verify(&path, "another one") && !verify(&path, &pw));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn sessions_expire_and_attempts_are_limited() {
        let a = Auth::new(Duration::from_secs(0));
        let (id, _) = a.create();
        assert!(a.get(&id).is_none());
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let tries = (0..10).filter(|_| a.may_try(ip)).count();
        assert_eq!(tries, 5);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
    }
}
