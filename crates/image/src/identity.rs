//! The ids a build derives from its image ([`xspack_io::Derivation`]): the same image gives
//! the same filesystem UUID, hash seed, VHD, VDI, VBD, SR and VM UUIDs, on every machine.
//!
//! Two schemes are in use, and each output keeps the one it was first made with:
//! - [`image_digest`] and [`image_uuid`]: domain `xspack\0` (or a guest's own), the purpose, the image digest and
//!   every layer's `diff_id`;
//! - [`image_seed`]: domain `xspack\0`, the purpose and the image digest only (the VHD and
//!   XVA ids of a bare filesystem image).

use xspack_io::{Derivation, Sha256Digest, Uuid};
use xspack_oci::Image;

/// The domain of a bare filesystem image's ids.
pub const IMAGE: &[u8] = b"xspack\0";

/// The digest of `purpose` for `image` in `domain`: the image digest and every layer's
/// `diff_id`. A guest uses its own domain, so its ids differ from those of the bare image.
pub fn image_digest(domain: &[u8], purpose: &str, image: &Image) -> Sha256Digest {
    let mut id = Derivation::new(domain).field(purpose.as_bytes()).bytes(&image.digest.0.0);
    for layer in &image.layers {
        id = id.bytes(&layer.diff_id.0.0);
    }
    id.digest()
}

/// A version 4 layout UUID from [`image_digest`] in the [`IMAGE`] domain (the filesystem
/// UUID and hash seed).
pub fn image_uuid(purpose: &str, image: &Image) -> [u8; 16] {
    Uuid::from_digest(&image_digest(IMAGE, purpose, image)).0
}

/// The seed of `purpose` for `image`: the [`IMAGE`] domain and the image digest alone (a bare
/// image's VHD, VDI, VBD, SR and VM ids).
pub fn image_seed(purpose: &str, image: &Image) -> Sha256Digest {
    Derivation::new(IMAGE).field(purpose.as_bytes()).bytes(&image.digest.0.0).digest()
}
