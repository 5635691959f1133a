//! The access keys the server accepts.
//!
//! A key is an access key id (public, sent in every request) and a secret
//! access key (never sent: both sides derive signing keys from it). The
//! store only answers "what is the secret for this id"; which buckets a key
//! may touch is decided elsewhere. Secrets never appear in `Debug` output,
//! so a logged request or config cannot leak them.

use std::collections::HashMap;
use std::fmt;

/// One access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public half, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key_id: String,
    /// The secret half, used only to derive signing keys.
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Every access key the server accepts, by access key id.
#[derive(Clone, Default)]
pub struct CredentialStore {
    secret_by_access_key_id: HashMap<String, String>,
}

impl CredentialStore {
    /// An empty store: every signed request fails with `InvalidAccessKeyId`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. Returns the credentials it replaced when the access key
    /// id was already present.
    pub fn insert(&mut self, credentials: Credentials) -> Option<Credentials> {
        let Credentials {
            access_key_id,
            secret_access_key,
        } = credentials;
        self.secret_by_access_key_id
            .insert(access_key_id.clone(), secret_access_key)
            .map(|secret_access_key| Credentials {
                access_key_id,
                secret_access_key,
            })
    }

    /// The secret access key for `access_key_id`, if the key exists.
    #[must_use]
    pub fn secret_access_key(&self, access_key_id: &str) -> Option<&str> {
        self.secret_by_access_key_id
            .get(access_key_id)
            .map(String::as_str)
    }

    /// How many keys the store holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.secret_by_access_key_id.len()
    }

    /// Whether the store holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secret_by_access_key_id.is_empty()
    }
}

impl FromIterator<Credentials> for CredentialStore {
    fn from_iter<I: IntoIterator<Item = Credentials>>(iter: I) -> Self {
        let mut store = Self::new();
        for credentials in iter {
            store.insert(credentials);
        }
        store
    }
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self
            .secret_by_access_key_id
            .keys()
            .map(String::as_str)
            .collect();
        ids.sort_unstable();
        f.debug_struct("CredentialStore")
            .field("access_key_ids", &ids)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> Credentials {
        Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
        }
    }

    #[test]
    fn several_keys_are_looked_up_by_id() {
        let store: CredentialStore = [key("AKID1", "secret1"), key("AKID2", "secret2")]
            .into_iter()
            .collect();
        assert_eq!(store.len(), 2);
        assert_eq!(store.secret_access_key("AKID1"), Some("secret1"));
        assert_eq!(store.secret_access_key("AKID2"), Some("secret2"));
        assert_eq!(store.secret_access_key("akid1"), None);
        assert!(CredentialStore::new().is_empty());
    }

    #[test]
    fn insert_replaces_and_returns_the_old_key() {
        let mut store = CredentialStore::new();
        assert_eq!(store.insert(key("AKID", "old")), None);
        assert_eq!(store.insert(key("AKID", "new")), Some(key("AKID", "old")));
        assert_eq!(store.secret_access_key("AKID"), Some("new"));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let store: CredentialStore = [key("AKID", "very-secret")].into_iter().collect();
        let printed = format!("{store:?} {:?}", key("AKID", "very-secret"));
        assert!(printed.contains("AKID"));
        assert!(!printed.contains("very-secret"));
    }
}

/// The owner shown for every bucket and object (`<Owner>` in listings):
/// ringstore has one tenant, named after the access key configured at
/// start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The canonical user id: hex SHA-256 of the access key id.
    pub id: String,
    pub display_name: String,
}

impl Owner {
    /// The owner of a store whose key is `credentials`.
    #[must_use]
    pub fn of(credentials: &Credentials) -> Owner {
        use sha2::Digest as _;
        Owner {
            id: hex::encode(sha2::Sha256::digest(credentials.access_key_id.as_bytes())),
            display_name: credentials.access_key_id.clone(),
        }
    }
}
