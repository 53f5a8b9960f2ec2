//! ECDSA key files whose private scalar is shorter than the curve's field.
//!
//! OpenSSH writes the scalar as a minimal `mpint`, so one P-256 key in 256 carries a 31-byte
//! scalar (one in 65,536 a 30-byte one). ssh-key 0.7 refuses any scalar under 32 bytes
//! ("length invalid") where `ssh` logs in with the same file. This module owns the way around
//! it: it re-reads such an `openssh-key-v1` file, decrypts it with ssh-key's own KDF and cipher
//! when it is encrypted, and hands ssh-key the same key, unencrypted and in memory only, with the
//! scalar left-padded to the field size. It answers `None` for every other file, so the caller
//! keeps ssh-key's own error for those.

use base64::Engine as _;
use russh::keys::PrivateKey;
use russh::keys::ssh_encoding::{Decode, Encode, Mpint};
use russh::keys::ssh_key::cipher::Tag;
use russh::keys::ssh_key::{Cipher, Kdf};
use zeroize::Zeroizing;

const MAGIC: &[u8] = b"openssh-key-v1\0";
/// The smallest scalar ssh-key decodes (its `EcdsaPrivateKey` MIN_SIZE).
const SSH_KEY_MIN: usize = 32;
/// The block size of an unencrypted private section.
const PLAIN_BLOCK: usize = 8;

/// The key in `text` when it is an OpenSSH ECDSA key whose scalar ssh-key would refuse as too
/// short; `Some(Err)` when it is such a key but cannot be opened (a wrong passphrase).
pub(super) fn load(text: &str, passphrase: Option<&str>) -> Option<Result<PrivateKey, String>> {
    let blob = Zeroizing::new(pem_body(text)?);
    let outer = Outer::parse(&blob)?;
    // Only ECDSA keys can have a short scalar: anything else keeps ssh-key's error, unopened.
    String::decode(&mut &*outer.public)
        .ok()
        .filter(|alg| alg.starts_with("ecdsa-sha2-"))?;
    let plain = match outer.cipher {
        Cipher::None => Zeroizing::new(outer.private.to_vec()),
        cipher => match decrypt(&outer, cipher, passphrase?) {
            Ok(plain) => plain,
            Err(e) => return Some(Err(e)),
        },
    };
    let inner = match Inner::parse(&plain) {
        Ok(inner) => inner?,
        Err(e) => return Some(Err(e)),
    };
    Some(inner.padded(outer.public).and_then(|blob| {
        PrivateKey::from_bytes(&blob).map_err(|e| format!("cannot read the padded ECDSA key: {e}"))
    }))
}

/// The decoded body of a `-----BEGIN OPENSSH PRIVATE KEY-----` block.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| *l == "-----BEGIN OPENSSH PRIVATE KEY-----")?;
    let body: String = lines.take_while(|l| !l.starts_with("-----END ")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()
}

/// The `openssh-key-v1` envelope around one key (PROTOCOL.key § 1).
struct Outer<'a> {
    cipher: Cipher,
    kdf: Kdf,
    public: &'a [u8],
    private: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Outer<'a> {
    fn parse(blob: &'a [u8]) -> Option<Outer<'a>> {
        let mut r = blob.strip_prefix(MAGIC)?;
        let cipher = Cipher::new(&String::decode(&mut r).ok()?).ok()?;
        let kdf = Kdf::decode(&mut r).ok()?;
        if u32::decode(&mut r).ok()? != 1 {
            return None;
        }
        let public = string(&mut r)?;
        let private = string(&mut r)?;
        Some(Outer {
            cipher,
            kdf,
            public,
            private,
            tag: r,
        })
    }
}

/// One SSH `string` of `r`, borrowed.
fn string<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(u32::decode(r).ok()?).ok()?;
    if r.len() < len {
        return None;
    }
    let (s, rest) = r.split_at(len);
    *r = rest;
    Some(s)
}

fn decrypt(
    outer: &Outer<'_>,
    cipher: Cipher,
    passphrase: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let (key, iv) = outer
        .kdf
        .derive_key_and_iv(cipher, passphrase)
        .map_err(|e| format!("cannot derive the key's cipher key: {e}"))?;
    let tag = match cipher.has_tag() {
        true => Some(Tag::try_from(outer.tag).map_err(|_| "the key's auth tag is not 16 bytes")?),
        false => None,
    };
    let mut plain = Zeroizing::new(outer.private.to_vec());
    cipher
        .decrypt(&key, &iv, &mut plain, tag)
        .map_err(|_| "wrong passphrase".to_string())?;
    Ok(plain)
}

/// The private section of an ECDSA key (PROTOCOL.key § 3, RFC 5656 § 3.1).
struct Inner {
    checkint: u32,
    algorithm: String,
    curve: String,
    point: Vec<u8>,
    scalar: Zeroizing<Vec<u8>>,
    comment: String,
}

impl Inner {
    /// `Ok(None)` when the section is not an ECDSA key with a scalar ssh-key refuses as short.
    fn parse(mut r: &[u8]) -> Result<Option<Inner>, String> {
        let r = &mut r;
        let (Ok(first), Ok(second)) = (u32::decode(r), u32::decode(r)) else {
            return Ok(None);
        };
        if first != second {
            return Err("wrong passphrase".into());
        }
        let Ok(algorithm) = String::decode(r) else {
            return Ok(None);
        };
        let (Ok(curve), Ok(point), Ok(scalar), Ok(comment)) = (
            String::decode(r),
            Vec::<u8>::decode(r),
            Mpint::decode(r),
            String::decode(r),
        ) else {
            return Ok(None);
        };
        let Some(scalar) = scalar.as_positive_bytes() else {
            return Ok(None);
        };
        let short = field_size(&curve).is_some_and(|size| scalar.len() < SSH_KEY_MIN.min(size));
        // The padding after the comment is rebuilt for the unencrypted blob, so it is not read.
        if !algorithm.starts_with("ecdsa-sha2-") || !short {
            return Ok(None);
        }
        Ok(Some(Inner {
            checkint: first,
            algorithm,
            curve,
            point,
            scalar: Zeroizing::new(scalar.to_vec()),
            comment,
        }))
    }

    /// The same key as an unencrypted `openssh-key-v1` blob, its scalar padded to the field size.
    fn padded(&self, public: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let size = field_size(&self.curve).ok_or("unknown ECDSA curve")?;
        let mut scalar = Zeroizing::new(vec![0u8; size]);
        scalar[size - self.scalar.len()..].copy_from_slice(&self.scalar);
        let mut section = Zeroizing::new(Vec::new());
        let encoded = (|| {
            self.checkint.encode(&mut *section)?;
            self.checkint.encode(&mut *section)?;
            self.algorithm.encode(&mut *section)?;
            self.curve.encode(&mut *section)?;
            self.point.encode(&mut *section)?;
            scalar.as_slice().encode(&mut *section)?;
            self.comment.encode(&mut *section)?;
            let mut pad = 1u8;
            while section.len() % PLAIN_BLOCK != 0 {
                section.push(pad);
                pad += 1;
            }
            let mut blob = Zeroizing::new(MAGIC.to_vec());
            "none".encode(&mut *blob)?;
            Kdf::None
                .encode(&mut *blob)
                .map_err(|_| russh::keys::ssh_encoding::Error::Length)?;
            1u32.encode(&mut *blob)?;
            public.encode(&mut *blob)?;
            section.as_slice().encode(&mut *blob)?;
            Ok::<_, russh::keys::ssh_encoding::Error>(blob)
        })();
        encoded.map_err(|e| format!("cannot re-encode the ECDSA key: {e}"))
    }
}

/// Bytes of a curve's private scalar.
fn field_size(curve: &str) -> Option<usize> {
    match curve {
        "nistp256" => Some(32),
        "nistp384" => Some(48),
        "nistp521" => Some(66),
        _ => None,
    }
}
