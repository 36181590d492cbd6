//! Verification keys: each bound to exactly one algorithm, so a key can
//! never be used outside its family (the RS256-public-key-as-HS256-secret
//! confusion, CVE-2016-10555 and its many descendants, needs a key that
//! verifies "whatever `alg` says"; these never do).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::config::{KeyMaterial, StaticKey};

/// One key for one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// Identifies the key material (a JWK's canonical JSON, or a file path),
    /// to tell whether a refresh removed a key.
    pub fingerprint: String,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

pub use crate::config::decoding_key_from_pem;

/// Builds the key of one `[[auth.keys]]` entry (already validated).
pub fn from_static(k: &StaticKey) -> Result<VerifyKey, String> {
    let (key, fingerprint) = match &k.material {
        KeyMaterial::Secret { env, secret } => {
            (DecodingKey::from_secret(secret), format!("env:{env}"))
        }
        KeyMaterial::Pem(p) => (
            decoding_key_from_pem(k.algorithm, &p.pem)?,
            format!("file:{}", p.path.display()),
        ),
    };
    Ok(VerifyKey {
        kid: k.kid.clone(),
        algorithm: k.algorithm,
        key,
        fingerprint,
    })
}

fn key_algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The algorithms a JWK may verify, among `allowed` (contract §4): its `alg`
/// when it has one, else every allowed algorithm of its key type. The key
/// type decides the family: `kty: oct` is only ever HS*, RSA only RS/PS,
/// EC only the ES of its curve, OKP only EdDSA.
pub fn jwk_algorithms(jwk: &Jwk, allowed: &[Algorithm]) -> Vec<Algorithm> {
    let fits = |a: Algorithm| -> bool {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => a.family() == AlgorithmFamily::Rsa,
            AlgorithmParameters::OctetKey(_) => a.family() == AlgorithmFamily::Hmac,
            AlgorithmParameters::OctetKeyPair(p) => {
                a == Algorithm::EdDSA && p.curve == EllipticCurve::Ed25519
            }
            AlgorithmParameters::EllipticCurve(p) => matches!(
                (a, &p.curve),
                (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
            ),
            _ => false,
        }
    };
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Vec::new();
    }
    match jwk.common.key_algorithm {
        Some(k) => match key_algorithm(k) {
            Some(a) if allowed.contains(&a) && fits(a) => vec![a],
            _ => Vec::new(),
        },
        None => allowed.iter().copied().filter(|a| fits(*a)).collect(),
    }
}

/// Parses a JWKS document into keys for `allowed` algorithms. Entries that
/// do not parse or fit no allowed algorithm are skipped, not fatal: one odd
/// key must not take the whole set down.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<Vec<VerifyKey>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| "JWKS has no `keys` array".to_string())?;
    let mut out = Vec::new();
    for entry in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let fingerprint = entry.to_string();
        for algorithm in jwk_algorithms(&jwk, allowed) {
            out.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key: key.clone(),
                fingerprint: fingerprint.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: &[Algorithm] = &[
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn oct_keys_never_verify_asymmetric_algorithms() {
        let oct = jwk(json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}));
        assert_eq!(jwk_algorithms(&oct, ALL), vec![Algorithm::HS256]);
        let oct_rs = jwk(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "RS256"}));
        assert!(jwk_algorithms(&oct_rs, ALL).is_empty());
    }

    #[test]
    fn rsa_keys_verify_only_rsa_algorithms() {
        let rsa = jwk(json!({"kty": "RSA", "n": N, "e": "AQAB"}));
        assert_eq!(
            jwk_algorithms(&rsa, ALL),
            vec![Algorithm::RS256, Algorithm::PS256]
        );
        let rsa_hs = jwk(json!({"kty": "RSA", "n": N, "e": "AQAB", "alg": "HS256"}));
        assert!(jwk_algorithms(&rsa_hs, ALL).is_empty());
        let rsa_pinned = jwk(json!({"kty": "RSA", "n": N, "e": "AQAB", "alg": "RS256"}));
        assert_eq!(jwk_algorithms(&rsa_pinned, ALL), vec![Algorithm::RS256]);
        let rsa_not_allowed = jwk(json!({"kty": "RSA", "n": N, "e": "AQAB", "alg": "RS512"}));
        assert!(jwk_algorithms(&rsa_not_allowed, ALL).is_empty());
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let enc = jwk(json!({"kty": "RSA", "n": N, "e": "AQAB", "use": "enc"}));
        assert!(jwk_algorithms(&enc, ALL).is_empty());
    }

    #[test]
    fn parse_jwks_skips_bad_entries() {
        let body = json!({"keys": [
            {"kty": "RSA", "n": N, "e": "AQAB", "kid": "a", "alg": "RS256"},
            {"kty": "weird"},
            {"kty": "oct", "k": "c2VjcmV0", "alg": "RS256", "kid": "b"}
        ]})
        .to_string();
        let keys = parse_jwks(body.as_bytes(), ALL).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert!(parse_jwks(b"{}", ALL).is_err());
        assert!(parse_jwks(b"nope", ALL).is_err());
    }
}
