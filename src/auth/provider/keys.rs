//! The identity provider's public keys: read from a JWK set or a PEM file, each with the algorithms
//! its type can serve. A key never verifies an algorithm of another family (an RSA key is never an
//! HMAC secret), and a symmetric (`oct`) key from a JWK set is never accepted.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use spki::der::pem;
use spki::ObjectIdentifier;

/// The algorithms a provider's token may be signed with (the asymmetric ones jsonwebtoken verifies).
pub const PROVIDER_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// RFC 7518 §3.3: an RSA key of at least 2048 bits.
const MIN_RSA_MODULUS_BYTES: usize = 256;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// One public key and the algorithms it verifies (never empty, never an HMAC one).
#[derive(Clone, Debug)]
pub struct ProviderKey {
    /// The JWK's `kid`; `None` for a key from a PEM file.
    pub kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl ProviderKey {
    /// Whether this key verifies `algorithm`.
    pub fn serves(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Keeps only the algorithms in `allowed`; `None` when none is left.
    fn restricted_to(mut self, allowed: &[Algorithm]) -> Option<ProviderKey> {
        self.algorithms.retain(|a| allowed.contains(a));
        (!self.algorithms.is_empty()).then_some(self)
    }
}

/// The keys a token may be checked against.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<ProviderKey>,
}

/// The keys a token's header points at.
#[derive(Debug)]
pub enum Candidates<'a> {
    /// Try these, in order (one, when the `kid` matched).
    Keys(Vec<&'a ProviderKey>),
    /// The key named by `kid` exists but does not serve the token's algorithm.
    WrongAlgorithm,
    /// No key fits: the `kid` is unknown (or, without a `kid`, no key serves the algorithm).
    Unknown,
}

impl KeySet {
    pub fn new(keys: Vec<ProviderKey>) -> KeySet {
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys for a token signed with `algorithm` under `kid`. A `kid` that names a key selects
    /// it alone; otherwise the keys without a `kid` (a PEM file's) that serve the algorithm, or,
    /// for a token without a `kid`, every key that serves it.
    pub fn candidates(&self, kid: Option<&str>, algorithm: Algorithm) -> Candidates<'_> {
        if let Some(kid) = kid {
            if let Some(key) = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                return if key.serves(algorithm) {
                    Candidates::Keys(vec![key])
                } else {
                    Candidates::WrongAlgorithm
                };
            }
        }
        let keys: Vec<&ProviderKey> = self
            .keys
            .iter()
            .filter(|k| (kid.is_none() || k.kid.is_none()) && k.serves(algorithm))
            .collect();
        if keys.is_empty() {
            Candidates::Unknown
        } else {
            Candidates::Keys(keys)
        }
    }

    /// Keeps only the algorithms in `allowed` on each key, and the keys left with one.
    pub fn restricted_to(self, allowed: &[Algorithm]) -> KeySet {
        KeySet {
            keys: self
                .keys
                .into_iter()
                .filter_map(|k| k.restricted_to(allowed))
                .collect(),
        }
    }
}

/// A JWK set read: the usable keys, and why each other key was skipped.
#[derive(Debug)]
pub struct ReadJwks {
    pub keys: KeySet,
    pub skipped: Vec<String>,
}

/// Reads a JWK set document (`{"keys": [...]}`). A key that cannot verify signatures here (a
/// symmetric key, an encryption key, an unsupported curve, a short RSA key) is skipped with its
/// reason; the document itself must be a JSON object with a `keys` list.
pub fn read_jwks(document: &[u8]) -> Result<ReadJwks, String> {
    let value: Value =
        serde_json::from_slice(document).map_err(|e| format!("the JWK set is not JSON: {e}"))?;
    let Some(items) = value.get("keys").and_then(Value::as_array) else {
        return Err("the JWK set has no \"keys\" list".to_owned());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let name = item
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| format!("key #{index}"), |kid| format!("key '{kid}'"));
        match serde_json::from_value::<Jwk>(item.clone())
            .map_err(|e| format!("not a JWK ({e})"))
            .and_then(|jwk| key_of_jwk(&jwk))
        {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(format!("{name}: {reason}")),
        }
    }
    Ok(ReadJwks {
        keys: KeySet::new(keys),
        skipped,
    })
}

/// One JWK as a verifying key, with the algorithms its type serves (narrowed to its `alg`).
pub fn key_of_jwk(jwk: &Jwk) -> Result<ProviderKey, String> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (\"use\" is not \"sig\")".to_owned());
    }
    let bad = |e: jsonwebtoken::errors::Error| format!("unreadable key material ({e})");
    let (algorithms, key): (Vec<Algorithm>, DecodingKey) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).map_err(bad)?;
            if let jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                check_modulus(n)?;
            }
            (RSA.to_vec(), key)
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (algorithm, size) = match ec.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 65),
                EllipticCurve::P384 => (Algorithm::ES384, 97),
                _ => return Err("an unsupported curve (P-256 and P-384 are)".to_owned()),
            };
            let key = DecodingKey::from_ec_components(&ec.x, &ec.y).map_err(bad)?;
            if key.as_bytes().len() != size {
                return Err("coordinates of the wrong length for the curve".to_owned());
            }
            (vec![algorithm], key)
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("an unsupported curve (Ed25519 is)".to_owned());
            }
            let key = DecodingKey::from_ed_components(&okp.x).map_err(bad)?;
            if key.as_bytes().len() != 32 {
                return Err("an Ed25519 key is 32 bytes".to_owned());
            }
            (vec![Algorithm::EdDSA], key)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key (\"kty\": \"oct\") is never accepted".to_owned())
        }
    };
    let algorithms = match jwk.common.key_algorithm {
        None => algorithms,
        Some(declared) => {
            let declared = declared.to_string().parse::<Algorithm>().ok();
            match declared.filter(|a| algorithms.contains(a)) {
                Some(algorithm) => vec![algorithm],
                None => return Err("its \"alg\" does not fit its key type".to_owned()),
            }
        }
    };
    Ok(ProviderKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

fn check_modulus(n: &[u8]) -> Result<(), String> {
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant < MIN_RSA_MODULUS_BYTES {
        return Err(format!(
            "an RSA key of {} bits (at least 2048 are needed)",
            significant * 8
        ));
    }
    Ok(())
}

/// Reads every public key in a PEM text (`PUBLIC KEY`, or `RSA PUBLIC KEY`): RSA (2048 bits or
/// more), EC P-256 or P-384, Ed25519. Any other block is an error that says what to give instead.
pub fn read_pem(text: &str) -> Result<Vec<ProviderKey>, String> {
    let mut keys = Vec::new();
    for (index, block) in pem_blocks(text).into_iter().enumerate() {
        let which = index + 1;
        let (label, der) =
            pem::decode_vec(block.as_bytes()).map_err(|e| format!("PEM block {which}: {e}"))?;
        let key = match label {
            "PUBLIC KEY" => key_of_spki(&der),
            "RSA PUBLIC KEY" => key_of_pkcs1(&der),
            "CERTIFICATE" => Err("a certificate, not a public key (extract it with `openssl x509 -in cert.pem -pubkey -noout`)".to_owned()),
            label if label.contains("PRIVATE KEY") => Err("a private key: give the public key (`openssl pkey -in key.pem -pubout`)".to_owned()),
            other => Err(format!("a '{other}' block, not a public key")),
        };
        keys.push(key.map_err(|e| format!("PEM block {which}: {e}"))?);
    }
    if keys.is_empty() {
        return Err("no PEM block (-----BEGIN PUBLIC KEY-----) found".to_owned());
    }
    Ok(keys)
}

/// The `-----BEGIN ...-----` to `-----END ...-----` blocks of a text, each as written.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END ") else {
            blocks.push(from);
            break;
        };
        let after_end = &from[end + "-----END ".len()..];
        let close = after_end
            .find("-----")
            .map_or(after_end.len(), |i| i + "-----".len());
        let length = end + "-----END ".len() + close;
        blocks.push(&from[..length]);
        rest = &from[length..];
    }
    blocks
}

fn key_of_spki(der: &[u8]) -> Result<ProviderKey, String> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo ({e})"))?;
    let bits = info
        .subject_public_key
        .as_bytes()
        .ok_or("the key's bit string is not whole bytes")?;
    let oid = info.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        key_of_pkcs1(bits)
    } else if oid == EC_PUBLIC_KEY {
        let (algorithm, size) = match info.algorithm.parameters_oid() {
            Ok(curve) if curve == P256 => (Algorithm::ES256, 65),
            Ok(curve) if curve == P384 => (Algorithm::ES384, 97),
            _ => return Err("an EC key on an unsupported curve (P-256 and P-384 are)".to_owned()),
        };
        if bits.len() != size || bits.first() != Some(&0x04) {
            return Err("an EC key that is not an uncompressed point of its curve".to_owned());
        }
        Ok(ProviderKey {
            kid: None,
            algorithms: vec![algorithm],
            key: DecodingKey::from_ec_der(bits),
        })
    } else if oid == ED25519 {
        if bits.len() != 32 {
            return Err("an Ed25519 key is 32 bytes".to_owned());
        }
        Ok(ProviderKey {
            kid: None,
            algorithms: vec![Algorithm::EdDSA],
            key: DecodingKey::from_ed_der(bits),
        })
    } else {
        Err(format!(
            "an unsupported key type ({oid}; RSA, EC P-256/P-384 and Ed25519 are)"
        ))
    }
}

fn key_of_pkcs1(der: &[u8]) -> Result<ProviderKey, String> {
    let rsa =
        pkcs1::RsaPublicKey::try_from(der).map_err(|e| format!("not an RSA public key ({e})"))?;
    check_modulus(rsa.modulus.as_bytes())?;
    Ok(ProviderKey {
        kid: None,
        algorithms: RSA.to_vec(),
        key: DecodingKey::from_rsa_raw_components(
            rsa.modulus.as_bytes(),
            rsa.public_exponent.as_bytes(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/idp/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("fixture")
    }

    #[test]
    fn each_key_type_serves_only_its_own_algorithms() {
        let rsa = &read_pem(&fixture("rsa-a.pub.pem")).unwrap()[0];
        assert!(rsa.serves(Algorithm::RS256) && rsa.serves(Algorithm::PS256));
        assert!(!rsa.serves(Algorithm::HS256) && !rsa.serves(Algorithm::ES256));
        let ec = &read_pem(&fixture("ec-p256.pub.pem")).unwrap()[0];
        assert_eq!(ec.algorithms(), [Algorithm::ES256]);
        let ed = &read_pem(&fixture("ed25519.pub.pem")).unwrap()[0];
        assert_eq!(ed.algorithms(), [Algorithm::EdDSA]);
    }

    #[test]
    fn several_pem_blocks_are_several_keys() {
        let text = fixture("rsa-a.pub.pem") + &fixture("ed25519.pub.pem");
        assert_eq!(read_pem(&text).unwrap().len(), 2);
    }

    #[test]
    fn a_private_key_a_certificate_or_nothing_is_refused_saying_what_to_give() {
        let private = read_pem(&fixture("rsa-a.key.pem")).unwrap_err();
        assert!(private.contains("-pubout"), "{private}");
        assert!(read_pem("").unwrap_err().contains("no PEM block"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(read_pem(cert).unwrap_err().contains("certificate"));
        let broken = "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n";
        assert!(read_pem(broken).is_err());
    }

    #[test]
    fn symmetric_encryption_and_short_keys_in_a_jwk_set_are_skipped() {
        let rsa: Value = serde_json::from_str(&fixture("rsa-a.jwk.json")).unwrap();
        let mut signing = rsa.clone();
        signing["kid"] = "good".into();
        let mut encryption = rsa.clone();
        encryption["kid"] = "enc".into();
        encryption["use"] = "enc".into();
        let mut mislabelled = rsa.clone();
        mislabelled["kid"] = "es".into();
        mislabelled["alg"] = "ES256".into();
        let short = serde_json::json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"});
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let document =
            serde_json::json!({"keys": [signing, encryption, mislabelled, short, oct, 42]});
        let read = read_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(read.keys.len(), 1, "{:?}", read.skipped);
        assert_eq!(read.skipped.len(), 5, "{:?}", read.skipped);
        assert!(read
            .skipped
            .iter()
            .any(|s| s.contains("'hmac'") && s.contains("symmetric")));
        assert!(read
            .skipped
            .iter()
            .any(|s| s.contains("'short'") && s.contains("2048")));
        assert!(read_jwks(b"[]").is_err());
        assert!(read_jwks(b"not json").is_err());
    }

    #[test]
    fn a_kid_selects_its_key_and_a_key_without_kid_serves_any() {
        let mut rsa = read_pem(&fixture("rsa-a.pub.pem")).unwrap().remove(0);
        rsa.kid = Some("a".into());
        let set = KeySet::new(vec![rsa]);
        assert!(
            matches!(set.candidates(Some("a"), Algorithm::RS256), Candidates::Keys(k) if k.len() == 1)
        );
        assert!(matches!(
            set.candidates(Some("a"), Algorithm::ES256),
            Candidates::WrongAlgorithm
        ));
        assert!(matches!(
            set.candidates(Some("b"), Algorithm::RS256),
            Candidates::Unknown
        ));
        assert!(matches!(
            set.candidates(None, Algorithm::RS256),
            Candidates::Keys(_)
        ));

        let pem = KeySet::new(read_pem(&fixture("ec-p256.pub.pem")).unwrap());
        assert!(matches!(
            pem.candidates(Some("any"), Algorithm::ES256),
            Candidates::Keys(_)
        ));
        assert!(matches!(
            pem.candidates(None, Algorithm::RS256),
            Candidates::Unknown
        ));
        let only_es = pem.restricted_to(&[Algorithm::RS256]);
        assert!(only_es.is_empty());
    }
}
