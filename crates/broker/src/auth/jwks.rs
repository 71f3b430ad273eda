//! Loads the JWKS file once and turns each usable key into a decoding key with
//! the one algorithm it may verify.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthSetupError;

/// A verification key and the single algorithm tokens under its `kid` must use.
pub(super) struct VerifyKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

/// Reads and parses the JWKS file; returns the usable keys by `kid`.
pub(super) fn load(path: &Path) -> Result<HashMap<String, VerifyKey>, AuthSetupError> {
    let text = std::fs::read(path).map_err(|source| AuthSetupError::ReadJwks {
        path: path.to_path_buf(),
        source,
    })?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| AuthSetupError::ParseJwks {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!("JWKS key without a kid ignored");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            tracing::warn!(kid = %kid, "JWKS key not meant for signatures ignored");
            continue;
        }
        let Some(alg) = algorithm_for(jwk, &kid)? else {
            tracing::warn!(kid = %kid, "JWKS key of an unsupported type or algorithm ignored");
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthSetupError::BadKey {
            kid: kid.clone(),
            reason: e.to_string(),
        })?;
        if keys.insert(kid.clone(), VerifyKey { key, alg }).is_some() {
            return Err(AuthSetupError::DuplicateKid { kid });
        }
    }
    if keys.is_empty() {
        return Err(AuthSetupError::NoUsableKeys {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

/// Whether the JWK set in `text` holds any key of `reference` (another JWK
/// set's text), compared by key material, not by kid or file name: a copy of
/// the dev key under another kid, or with padding in its base64, is still the
/// dev key.
pub(super) fn shares_a_key(text: &[u8], reference: &[u8]) -> Result<bool, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let reference: JwkSet = serde_json::from_slice(reference).map_err(|e| e.to_string())?;
    let known: Vec<Vec<u8>> = reference.keys.iter().filter_map(material).collect();
    Ok(set
        .keys
        .iter()
        .filter_map(material)
        .any(|m| known.contains(&m)))
}

/// A key's public material as bytes: its type, curve and coordinates (EC,
/// OKP) or modulus and exponent (RSA), each decoded from base64url with
/// leading zero bytes dropped, so that equal keys compare equal however they
/// were encoded. `None` for keys without public material we know.
fn material(jwk: &Jwk) -> Option<Vec<u8>> {
    use base64::Engine;
    let decode = |s: &str| -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()?;
        let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Some(raw[first..].to_vec())
    };
    let mut out = Vec::new();
    let mut push = |tag: &str, parts: &[&str]| -> Option<()> {
        out.extend_from_slice(tag.as_bytes());
        for p in parts {
            let bytes = decode(p)?;
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        Some(())
    };
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => {
            push(&format!("EC {:?}", ec.curve), &[&ec.x, &ec.y])?
        }
        AlgorithmParameters::RSA(rsa) => push("RSA", &[&rsa.n, &rsa.e])?,
        AlgorithmParameters::OctetKeyPair(okp) => push(&format!("OKP {:?}", okp.curve), &[&okp.x])?,
        _ => return None,
    }
    Some(out)
}

/// The one algorithm a key verifies: its declared `alg` (which must fit the key
/// type), else the natural one for its type. `Ok(None)`: a key we do not use.
/// Symmetric keys are refused outright: a JWKS of public keys must not hold one.
fn algorithm_for(jwk: &Jwk, kid: &str) -> Result<Option<Algorithm>, AuthSetupError> {
    let mismatch = |reason: &str| AuthSetupError::BadKey {
        kid: kid.to_string(),
        reason: reason.to_string(),
    };
    match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => Err(mismatch("symmetric (oct) keys are not accepted")),
        AlgorithmParameters::EllipticCurve(ec) => {
            let natural = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Ok(None),
            };
            match jwk.common.key_algorithm {
                None => Ok(Some(natural)),
                Some(KeyAlgorithm::ES256 | KeyAlgorithm::ES384) => {
                    let declared = declared(jwk, kid)?;
                    if declared == natural {
                        Ok(Some(declared))
                    } else {
                        Err(mismatch("alg does not match the curve"))
                    }
                }
                Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => Ok(None),
                Some(_) => Err(mismatch("alg does not match the key type EC")),
            }
        }
        AlgorithmParameters::RSA(_) => match jwk.common.key_algorithm {
            None => Ok(Some(Algorithm::RS256)),
            Some(
                KeyAlgorithm::RS256
                | KeyAlgorithm::RS384
                | KeyAlgorithm::RS512
                | KeyAlgorithm::PS256
                | KeyAlgorithm::PS384
                | KeyAlgorithm::PS512,
            ) => declared(jwk, kid).map(Some),
            // RSA encryption algorithms and unknown names: not a signing key for us.
            Some(
                KeyAlgorithm::RSA1_5
                | KeyAlgorithm::RSA_OAEP
                | KeyAlgorithm::RSA_OAEP_256
                | KeyAlgorithm::UNKNOWN_ALGORITHM,
            ) => Ok(None),
            Some(_) => Err(mismatch("alg does not match the key type RSA")),
        },
        _ => Ok(None),
    }
}

fn declared(jwk: &Jwk, kid: &str) -> Result<Algorithm, AuthSetupError> {
    jwk.common
        .key_algorithm
        .and_then(|a| Algorithm::try_from(a).ok())
        .ok_or_else(|| AuthSetupError::BadKey {
            kid: kid.to_string(),
            reason: "unsupported alg".to_string(),
        })
}
