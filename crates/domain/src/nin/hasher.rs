//! The keyed hash that stands in for a national id wherever one would otherwise
//! be tempting to log.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::NationalId;

/// HMAC-SHA256 over the id's number under a secret key; the first 8 bytes in hex.
/// Correlates log lines of one person without revealing the person: with 10^11
/// possible ids an unkeyed hash could be reversed by brute force in minutes.
#[derive(Clone)]
pub struct NinHasher {
    key: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
#[error("log_hash_key must be at least 32 hex digits")]
pub struct BadHashKey;

impl NinHasher {
    /// From a configured hex key, or a random one when none is configured.
    pub fn new(hex_key: Option<&str>) -> Result<Self, BadHashKey> {
        let mut key = [0u8; 32];
        match hex_key {
            Some(k) => {
                let bytes = hex::decode(k.trim()).map_err(|_| BadHashKey)?;
                if bytes.len() < 16 {
                    return Err(BadHashKey);
                }
                // Fold a key of any length ≥ 16 bytes into 32 through SHA-256.
                use sha2::Digest;
                key.copy_from_slice(&Sha256::digest(&bytes));
            }
            None => rand::fill(&mut key),
        }
        Ok(NinHasher { key })
    }

    pub fn hash(&self, nin: NationalId) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(&nin.as_u64().to_be_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

impl std::fmt::Debug for NinHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NinHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nin::{IdPolicy, make_id};

    #[test]
    fn keyed_hash_is_stable_per_key_and_differs_across_keys() {
        let id = NationalId::parse(
            &make_id(1, 1, 70, 123, false, false).unwrap(),
            IdPolicy::STRICT,
        )
        .unwrap();
        let a = NinHasher::new(Some("00112233445566778899aabbccddeeff")).unwrap();
        let b = NinHasher::new(Some("ffeeddccbbaa99887766554433221100")).unwrap();
        assert_eq!(a.hash(id), a.hash(id));
        assert_ne!(a.hash(id), b.hash(id));
        assert_eq!(a.hash(id).len(), 16);
        assert!(!a.hash(id).contains(&id.expose()[..6]));
        assert!(NinHasher::new(Some("abcd")).is_err());
    }
}
