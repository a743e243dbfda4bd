//! Signature checks for `jsonwebtoken` done by `ring`: a verify-only `CryptoProvider`.
//!
//! jsonwebtoken 10+ takes its cryptography from a provider; its own ones pull in either aws-lc or ~40
//! RustCrypto crates, while ring is already in the binary for TLS. This file only maps each JWS
//! algorithm to ring's verifier for it, refusing a key of another family (an RSA key named in an
//! `ES256` header, an HMAC secret for anything): the classic algorithm-confusion attacks stop here.
//! Nothing signs: `signer_factory` always refuses.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as ring_sig;

/// The provider; installed once, before the first token is checked.
pub static RING: CryptoProvider =
    CryptoProvider { signer_factory: no_signer, verifier_factory: verifier, key_utils: KeyUtils::new_unimplemented() };

/// Installs [`RING`] as jsonwebtoken's provider (a second call is harmless).
pub fn install() {
    let _ = RING.install_default();
}

/// The algorithms accepted in access tokens: public-key ones only (an HMAC token could only be checked
/// with a secret shared with the authorization server, which a resource server does not have).
pub fn is_public_key_algorithm(alg: Algorithm) -> bool {
    matches!(alg.family(), AlgorithmFamily::Rsa | AlgorithmFamily::Ec | AlgorithmFamily::Ed)
}

struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl RingVerifier {
    fn rsa_parameters(&self) -> Option<&'static ring_sig::RsaParameters> {
        Some(match self.alg {
            Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    fn other_algorithm(&self) -> Option<&'static dyn ring_sig::VerificationAlgorithm> {
        Some(match self.alg {
            Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &ring_sig::ED25519,
            _ => return None,
        })
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let refused = |_| signature::Error::new();
        if let Some(params) = self.rsa_parameters() {
            return match self.key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    ring_sig::RsaPublicKeyComponents { n, e }.verify(params, message, sig).map_err(refused)
                }
                DecodingKeyKind::SecretOrDer(der) => ring_sig::UnparsedPublicKey::new(params, der).verify(message, sig).map_err(refused),
            };
        }
        let alg = self.other_algorithm().ok_or_else(signature::Error::new)?;
        let key = self.key.try_get_as_bytes().map_err(|_| signature::Error::new())?;
        ring_sig::UnparsedPublicKey::new(alg, key).verify(message, sig).map_err(refused)
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if !is_public_key_algorithm(*alg) || alg.family() != key.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingVerifier { alg: *alg, key: key.clone() }))
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}
