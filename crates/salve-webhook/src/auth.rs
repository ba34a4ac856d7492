//! Bearer-token authentication of Alertmanager.
//!
//! The token lives in a file (a mounted Secret) and is re-read when the file changes, so a
//! rotated Secret takes effect without a restart. Only its SHA-256 is kept in memory; the
//! presented token is hashed the same way and the digests are compared in constant time
//! (`subtle`), so neither the token's content nor its length leaks through timing. The token
//! is never logged: errors name the file, never its content.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {0} is empty")]
    Empty(PathBuf),
}

impl TokenError {
    /// PascalCase category.
    pub fn category(&self) -> &'static str {
        match self {
            TokenError::Read { .. } => "TokenFileUnreadable",
            TokenError::Empty(_) => "TokenFileEmpty",
        }
    }
}

/// The expected token, as a digest, with the file it came from.
#[derive(Debug)]
pub struct Token {
    path: PathBuf,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    digest: [u8; 32],
    modified: Option<SystemTime>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn read(path: &Path) -> Result<State, TokenError> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let raw = std::fs::read(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    // Secrets written by hand often end in a newline; it is never part of the token.
    let token = raw.trim_ascii();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_owned()));
    }
    Ok(State {
        digest: digest(token),
        modified,
    })
}

impl Token {
    /// Reads the token file; fails if it is unreadable or empty.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        Ok(Token {
            path: path.to_owned(),
            state: RwLock::new(read(path)?),
        })
    }

    /// Re-reads the file if its modification time changed. A file that became unreadable or
    /// empty keeps the previous token (and the error is returned for logging).
    pub fn refresh(&self) -> Result<bool, TokenError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if modified.is_some() && s.modified == modified {
                return Ok(false);
            }
        }
        let fresh = read(&self.path)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    /// Whether an `Authorization` header value carries the token (`Bearer <token>`).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = strip_bearer(value) else {
            return false;
        };
        let want = self.state.read().unwrap_or_else(|p| p.into_inner()).digest;
        digest(presented).ct_eq(&want).into()
    }
}

/// The credentials of a `Bearer` authorization value (scheme case-insensitive).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(content: &str) -> (PathBuf, Token) {
        let dir = std::env::temp_dir().join(format!(
            "salve-token-{}-{}",
            std::process::id(),
            content.len()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("token");
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
        let t = Token::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        (path, t)
    }

    #[test]
    fn the_right_bearer_token_is_accepted_and_anything_else_refused() {
        let (_, t) = token_file("s3cret-token\n");
        assert!(t.accepts(Some(b"Bearer s3cret-token")));
        assert!(t.accepts(Some(b"bearer s3cret-token")));
        assert!(!t.accepts(Some(b"Bearer s3cret-tokem")));
        assert!(!t.accepts(Some(b"Bearer s3cret-token-and-more")));
        assert!(!t.accepts(Some(b"Basic czNjcmV0LXRva2Vu")));
        assert!(!t.accepts(Some(b"Bearer ")));
        assert!(!t.accepts(Some(b"s3cret-token")));
        assert!(!t.accepts(None));
    }

    #[test]
    fn an_empty_token_file_is_refused_at_start() {
        let dir = std::env::temp_dir().join(format!("salve-token-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("token");
        std::fs::write(&path, " \n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(Token::from_file(&path), Err(TokenError::Empty(_))));
        let err = Token::from_file(&dir.join("missing")).err();
        assert!(matches!(err, Some(TokenError::Read { .. })));
    }

    #[test]
    fn a_rotated_token_file_takes_effect_on_refresh() {
        let (path, t) = token_file("first-token-value");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "second-token-value").unwrap_or_else(|e| panic!("{e}"));
        // Make sure the modification time moves even on coarse-grained filesystems.
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.refresh().unwrap_or_else(|e| panic!("{e}")));
        assert!(t.accepts(Some(b"Bearer second-token-value")));
        assert!(!t.accepts(Some(b"Bearer first-token-value")));
    }
}
