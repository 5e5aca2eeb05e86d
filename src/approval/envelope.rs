//! Evidence envelopes: what a person saw and did when they approved a co-signed request with a
//! drawn signature, sealed as one JSON document.
//!
//! ```json
//! {"captured_at":1709000000,"decision":"approved","image_hash":"sha256:…",
//!  "metadata":{…},"payload_hash":"sha512:…","pending_id":"pnd_…",
//!  "scope":{"authorization_id":"az_…","key_id":"ak_…","namespace":"file",…},
//!  "signature_image":"<base64 PNG>","signer":{"authenticator":"aut_…","method":"passkey",
//!  "user_id":"usr_…"},"signer_ip":"203.0.113.7","version":1}
//! ```
//!
//! The envelope is RFC 8785 canonical JSON, so its bytes are fixed by its content. Its SHA-256
//! binds it; the token's decision key signs [`SEAL_CONTEXT`] followed by that hash (the context
//! keeps a seal from ever being mistaken for a decision signature). The drawn image exists only
//! inside the envelope. Anyone with the envelope's exact bytes, its seal and the appliance's key
//! can check it offline, and can check the document's SSHSIG against `payload_hash`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::canonical;

/// What the seal signs before the envelope's SHA-256.
pub const SEAL_CONTEXT: &[u8] = b"sshsign evidence envelope v1\0";
/// The largest drawn signature accepted, as PNG bytes.
pub const MAX_IMAGE_BYTES: usize = 256 * 1024;
/// The largest drawn signature accepted, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 2000;

/// Who signed, as the appliance established it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    pub user_id: String,
    /// The authenticator that proved it (`aut_...`).
    pub authenticator: String,
    pub method: String,
}

/// The envelope's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub pending_id: String,
    /// `sha512:<hex>` of the document.
    pub payload_hash: String,
    /// What was signed with which key under which authorization.
    pub scope: Map<String, Value>,
    pub metadata: Map<String, Value>,
    pub signer: Signer,
    pub signer_ip: String,
    /// Base64 of the PNG as drawn.
    pub signature_image: String,
    /// `sha256:<hex>` of the PNG.
    pub image_hash: String,
    pub captured_at: i64,
    pub decision: String,
}

/// Why an envelope or a drawn signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the drawn signature is not a PNG image: {0}")]
    Image(String),
    #[error("the drawn signature is empty; draw it, then approve")]
    BlankImage,
    #[error("the envelope is not valid: {0}")]
    Malformed(String),
    #[error("the envelope's bytes are not in canonical form (RFC 8785)")]
    NotCanonical,
    #[error("the envelope's SHA-256 is {found}, not the stated {stated}")]
    HashMismatch { stated: String, found: String },
    #[error("the signature image does not match image_hash")]
    ImageHashMismatch,
    #[error("the seal does not verify under key {0}")]
    BadSeal(String),
}

/// Checks a drawn signature's bytes without decoding them: no larger than the limits, and a PNG
/// chunk by chunk ([`png_chunks`](super::png_chunks)). Cheap; run before an approver's proof is
/// spent. Returns its width and height.
pub fn check_image_structure(png_bytes: &[u8]) -> Result<(u32, u32), EnvelopeError> {
    if png_bytes.len() > MAX_IMAGE_BYTES {
        return Err(EnvelopeError::Image(format!(
            "{} bytes is over the {MAX_IMAGE_BYTES}-byte limit",
            png_bytes.len()
        )));
    }
    super::png_chunks::check_structure(png_bytes, MAX_IMAGE_SIDE).map_err(EnvelopeError::Image)
}

/// Checks a drawn signature: [`check_image_structure`], then decodable in full, with ink on it.
/// Returns its width and height. A panic in the decoder (a bug of its own) is a refused image.
pub fn check_image(png_bytes: &[u8]) -> Result<(u32, u32), EnvelopeError> {
    check_image_structure(png_bytes)?;
    std::panic::catch_unwind(|| decode_image(png_bytes)).unwrap_or_else(|_| {
        Err(EnvelopeError::Image(
            "the image could not be decoded".to_owned(),
        ))
    })
}

fn decode_image(png_bytes: &[u8]) -> Result<(u32, u32), EnvelopeError> {
    let bad = |e: &dyn std::fmt::Display| EnvelopeError::Image(e.to_string());
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(png_bytes),
        png::Limits {
            bytes: 4 * (MAX_IMAGE_SIDE as usize) * (MAX_IMAGE_SIDE as usize),
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(EnvelopeError::Image(format!(
            "{width}x{height} is outside 1..={MAX_IMAGE_SIDE} pixels a side"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| EnvelopeError::Image("the image is too large".into()))?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).map_err(|e| bad(&e))?;
    let pixels = &pixels[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    // Ink: a pixel clearly darker than the paper, and not transparent.
    let inked = pixels
        .chunks_exact(channels)
        .filter(|p| {
            let (luma, alpha) = match p.len() {
                1 => (u32::from(p[0]), 255),
                2 => (u32::from(p[0]), u32::from(p[1])),
                3 => (
                    (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3,
                    255,
                ),
                _ => (
                    (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3,
                    u32::from(p[3]),
                ),
            };
            luma < 160 && alpha > 128
        })
        .count();
    if inked < 20 {
        return Err(EnvelopeError::BlankImage);
    }
    Ok((width, height))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_tag(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::hex::encode(&Sha256::digest(bytes)))
}

impl Envelope {
    /// The envelope's exact bytes (canonical JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings, integers and JSON metadata only: there is always a canonical form, except
        // for metadata numbers canonical JSON cannot hold, which the caller has refused.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| canonical::to_vec(&v).ok())
            .unwrap_or_default()
    }

    /// The image, decoded from base64.
    pub fn image(&self) -> Option<Vec<u8>> {
        BASE64.decode(&self.signature_image).ok()
    }
}

/// The message the token signs to seal an envelope with SHA-256 `hash`.
pub fn seal_message(hash: &[u8; 32]) -> Vec<u8> {
    let mut message = SEAL_CONTEXT.to_vec();
    message.extend_from_slice(hash);
    message
}

/// Checks an envelope offline: canonical bytes, the stated hash, the image hash, and the seal
/// by `public_key`. Returns the envelope.
pub fn verify(
    bytes: &[u8],
    stated_sha256: &str,
    seal: &[u8],
    key_id: &str,
    public_key: &[u8; 32],
) -> Result<Envelope, EnvelopeError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if envelope.to_bytes() != bytes {
        return Err(EnvelopeError::NotCanonical);
    }
    let found = sha256_tag(bytes);
    if found != stated_sha256 {
        return Err(EnvelopeError::HashMismatch {
            stated: stated_sha256.to_owned(),
            found,
        });
    }
    let image = envelope
        .image()
        .ok_or_else(|| EnvelopeError::Malformed("signature_image is not base64".into()))?;
    if sha256_tag(&image) != envelope.image_hash {
        return Err(EnvelopeError::ImageHashMismatch);
    }
    let hash: [u8; 32] = Sha256::digest(bytes).into();
    crate::sshsig::verify_ed25519(public_key, &seal_message(&hash), seal)
        .map_err(|_| EnvelopeError::BadSeal(key_id.to_owned()))?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    /// A white PNG with a dark stroke (or none).
    fn png(width: u32, height: u32, ink: bool) -> Vec<u8> {
        let mut pixels = vec![255u8; (width * height * 4) as usize];
        if ink {
            for x in 10..(width - 10) {
                let at = ((height / 2 * width + x) * 4) as usize;
                pixels[at..at + 3].copy_from_slice(&[16, 36, 62]);
            }
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&pixels).unwrap();
        writer.finish().unwrap();
        out
    }

    fn envelope(image: &[u8]) -> Envelope {
        Envelope {
            version: 1,
            pending_id: "pnd_1".into(),
            payload_hash: format!("sha512:{}", "ab".repeat(64)),
            scope: serde_json::json!({"key_id": "ak_1", "namespace": "file"})
                .as_object()
                .unwrap()
                .clone(),
            metadata: Map::new(),
            signer: Signer {
                user_id: "usr_1".into(),
                authenticator: "aut_1".into(),
                method: "passkey".into(),
            },
            signer_ip: "127.0.0.1".into(),
            signature_image: BASE64.encode(image),
            image_hash: sha256_tag(image),
            captured_at: 1_709_000_000,
            decision: "approved".into(),
        }
    }

    #[test]
    fn drawn_signatures_are_checked() {
        assert_eq!(check_image(&png(600, 200, true)), Ok((600, 200)));
        assert_eq!(
            check_image(&png(600, 200, false)),
            Err(EnvelopeError::BlankImage)
        );
        assert!(matches!(
            check_image(b"GIF89a..."),
            Err(EnvelopeError::Image(_))
        ));
        let mut cut = png(600, 200, true);
        cut.truncate(cut.len() / 2);
        assert!(matches!(check_image(&cut), Err(EnvelopeError::Image(_))));
        assert!(matches!(
            check_image(&png(2100, 20, true)),
            Err(EnvelopeError::Image(_))
        ));
        assert!(matches!(
            check_image(&vec![0; MAX_IMAGE_BYTES + 1]),
            Err(EnvelopeError::Image(_))
        ));
        // Found by fuzzing: an indexed PNG with a 4-byte PLTE panics png 0.18.1's decoder.
        let palette_panic = crate::hex::decode(
            "89504e470d0a1a0a0000000d4948445200000063000002200403000000815467c700000004504c54\
             45000000fffffffc0080b3001649444154789c630cffffffff6082",
        )
        .unwrap();
        assert!(matches!(
            check_image(&palette_panic),
            Err(EnvelopeError::Image(_))
        ));
        assert!(check_image_structure(&palette_panic).is_err());
        // Past the structure check, a decoder panic would still be a refused image.
        let decoded = std::panic::catch_unwind(|| decode_image(&palette_panic));
        assert!(!matches!(decoded, Ok(Ok(_))));
    }

    #[test]
    fn a_sealed_envelope_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let bytes = envelope(&png(300, 100, true)).to_bytes();
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let seal = key.sign(&seal_message(&hash)).to_bytes();
        let stated = sha256_tag(&bytes);
        let opened = verify(&bytes, &stated, &seal, "k", &public).unwrap();
        assert_eq!(opened.decision, "approved");

        // A decision signature over the bare hash is not a seal.
        let bare = key.sign(&hash).to_bytes();
        assert_eq!(
            verify(&bytes, &stated, &bare, "k", &public),
            Err(EnvelopeError::BadSeal("k".into()))
        );
        // Any changed byte fails one check or another.
        for i in (0..bytes.len()).step_by(7) {
            let mut changed = bytes.clone();
            changed[i] ^= 0x20;
            assert!(
                verify(&changed, &stated, &seal, "k", &public).is_err(),
                "byte {i}"
            );
        }
        // A swapped image with its own hash still breaks the seal.
        let mut swapped = envelope(&png(300, 100, true));
        let other = png(301, 100, true);
        swapped.signature_image = BASE64.encode(&other);
        swapped.image_hash = sha256_tag(&other);
        let swapped = swapped.to_bytes();
        assert!(verify(&swapped, &sha256_tag(&swapped), &seal, "k", &public).is_err());
    }
}
