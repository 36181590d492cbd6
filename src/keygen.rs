//! Throwaway key pairs in PEM form, for `credgate demo`, the emulator and
//! tests. Production keys come from the operator (Paragon's dashboard for
//! the signing key, the IdP for caller keys); nothing here is used for them.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::Engine as _;

/// A private key (PKCS#8) and its public key (SubjectPublicKeyInfo), as PEM.
#[derive(Clone)]
pub struct PemPair {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemPair(..)")
    }
}

/// Wraps DER in PEM armour with 64-column lines (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pair(private_der: &[u8], public_der: &[u8]) -> PemPair {
    PemPair {
        private_pem: pem("PRIVATE KEY", private_der),
        public_pem: pem("PUBLIC KEY", public_der),
    }
}

/// A 2048-bit RSA key pair (RS256/PS256, and Paragon's signing key).
pub fn rsa() -> Result<PemPair, String> {
    let kp = KeyPair::generate(KeySize::Rsa2048).map_err(|_| "RSA key generation failed")?;
    let private = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
        .map_err(|_| "RSA key encoding failed")?;
    let public: PublicKeyX509Der = kp
        .public_key()
        .as_der()
        .map_err(|_| "RSA public key encoding failed")?;
    Ok(pair(private.as_ref(), public.as_ref()))
}

/// An ECDSA key pair on P-256 (ES256) or, with `p384`, P-384 (ES384).
pub fn ecdsa(p384: bool) -> Result<PemPair, String> {
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| "EC key generation failed")?;
    let kp = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).map_err(|_| "EC key parsing failed")?;
    let public: PublicKeyX509Der = kp
        .public_key()
        .as_der()
        .map_err(|_| "EC public key encoding failed")?;
    Ok(pair(doc.as_ref(), public.as_ref()))
}

/// An Ed25519 key pair (EdDSA).
pub fn ed25519() -> Result<PemPair, String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "Ed25519 key generation failed")?;
    let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| "Ed25519 key parsing failed")?;
    let public: PublicKeyX509Der = kp
        .public_key()
        .as_der()
        .map_err(|_| "Ed25519 public key encoding failed")?;
    Ok(pair(doc.as_ref(), public.as_ref()))
}

/// `n` random bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("the system RNG is available");
    out
}

/// A random version-4 UUID, lowercase.
pub fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    format_uuid(b)
}

/// 16 bytes as a canonical lowercase UUID, with the RFC 9562 variant bits
/// set (the version nibble is the caller's).
pub fn format_uuid(mut b: [u8; 16]) -> String {
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, Algorithm, EncodingKey, Header, Validation};

    fn round_trip(p: &PemPair, alg: Algorithm) {
        let enc = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                EncodingKey::from_rsa_pem(p.private_pem.as_bytes())
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                EncodingKey::from_ec_pem(p.private_pem.as_bytes())
            }
            _ => EncodingKey::from_ed_pem(p.private_pem.as_bytes()),
        }
        .unwrap();
        let dec = crate::config::decoding_key_from_pem(alg, p.public_pem.as_bytes()).unwrap();
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let token = encode(&Header::new(alg), &claims, &enc).unwrap();
        let got = decode::<serde_json::Value>(&token, &dec, &Validation::new(alg)).unwrap();
        assert_eq!(got.claims["sub"], "x");
    }

    #[test]
    fn generated_keys_sign_and_verify_with_jsonwebtoken() {
        round_trip(&rsa().unwrap(), Algorithm::RS256);
        round_trip(&ecdsa(false).unwrap(), Algorithm::ES256);
        round_trip(&ecdsa(true).unwrap(), Algorithm::ES384);
        round_trip(&ed25519().unwrap(), Algorithm::EdDSA);
    }

    #[test]
    fn uuids_are_canonical_and_distinct() {
        let a = uuid_v4();
        assert!(crate::config::is_uuid(&a));
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, uuid_v4());
    }
}
