//! What an uploaded file may be: at most [`MAX_UPLOAD_BYTES`], and a picture or a PDF by
//! its bytes (the `infer` crate reads the magic numbers), whatever the client claims.

pub use crate::web::MAX_UPLOAD_BYTES;

/// The types kept: photos from phones and scanned documents.
pub const ALLOWED_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "application/pdf"];

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Empty,
    TooLarge,
    Type,
}

/// The content type of an acceptable upload.
pub fn check(bytes: &[u8]) -> Result<&'static str, Refused> {
    if bytes.is_empty() {
        return Err(Refused::Empty);
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(Refused::TooLarge);
    }
    let found = infer::get(bytes).map(|t| t.mime_type()).ok_or(Refused::Type)?;
    ALLOWED_TYPES.into_iter().find(|t| *t == found).ok_or(Refused::Type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_and_pdfs_pass_by_their_bytes_and_nothing_else_does() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D];
        assert_eq!(check(&png), Ok("image/png"));
        assert_eq!(check(b"%PDF-1.7\n..."), Ok("application/pdf"));
        assert_eq!(check(b"<html><script>"), Err(Refused::Type));
        assert_eq!(check(b"MZ\x90\x00\x03\x00\x00\x00"), Err(Refused::Type));
        assert_eq!(check(b""), Err(Refused::Empty));
        let mut big = png.to_vec();
        big.resize(MAX_UPLOAD_BYTES + 1, 0);
        assert_eq!(check(&big), Err(Refused::TooLarge));
    }
}
