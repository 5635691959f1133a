//! What the body of an authenticated request is, from `x-amz-content-sha256`.
//!
//! SigV4 does not sign the body directly: the last line of the canonical
//! request is a declared payload hash, and the header says which kind it
//! is. The signature check only proves the declaration was signed; the body
//! must then be read in the way the declaration names, which is what
//! [`PayloadMode`] tells the server:
//!
//! | `x-amz-content-sha256`                        | [`PayloadMode`]                  |
//! |-----------------------------------------------|----------------------------------|
//! | 64 hex digits                                 | `Sha256`, checked after the body |
//! | `UNSIGNED-PAYLOAD`                            | `Unsigned`                       |
//! | `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`          | `StreamingSigned`, no trailer    |
//! | `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`  | `StreamingSigned`, trailer       |
//! | `STREAMING-UNSIGNED-PAYLOAD-TRAILER`          | `StreamingUnsignedTrailer`       |
//! | `STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD[-TRAILER]` | `NotImplemented` (SigV4a) |
//! | anything else                                 | `InvalidArgument`                |
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html>

use subtle::ConstantTimeEq;

use crate::auth::AuthError;
use crate::auth::chunked::ChunkSigningContext;
use crate::auth::sigv4::{SigningKey, UNSIGNED_PAYLOAD};

/// How the server must read and check the body of an authenticated request.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per request, moved once into the body reader; boxing would only add an allocation"
)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD` (header or presigned): the body is used as is.
    Unsigned,
    /// The SHA-256 the client declared. The server hashes the body while
    /// reading it and calls [`check_content_sha256`] at the end.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: an aws-chunked body
    /// whose chunk signatures chain from `seed` (decode with
    /// `AwsChunkedDecoder::new(AwsChunkedMode::Signed(seed), trailer)`).
    StreamingSigned {
        trailer: bool,
        seed: ChunkSigningContext,
    },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: an aws-chunked body without
    /// signatures, ending in trailers (decode with
    /// `AwsChunkedDecoder::new(AwsChunkedMode::Unsigned, true)`).
    StreamingUnsignedTrailer,
}

/// The declared payload kind, before the signing key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentSha256 {
    Unsigned,
    Sha256([u8; 32]),
    StreamingSigned { trailer: bool },
    StreamingUnsignedTrailer,
}

impl ContentSha256 {
    /// Parses an `x-amz-content-sha256` value.
    pub(crate) fn parse(value: &[u8]) -> Result<Self, AuthError> {
        match value {
            b"UNSIGNED-PAYLOAD" => Ok(Self::Unsigned),
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Ok(Self::StreamingSigned { trailer: false }),
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
                Ok(Self::StreamingSigned { trailer: true })
            }
            b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Ok(Self::StreamingUnsignedTrailer),
            b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
            | b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER" => {
                Err(AuthError::NotImplemented(
                    "A header you provided implies functionality that is not implemented: \
                     SigV4a (ECDSA) streaming payloads are not supported."
                        .to_owned(),
                ))
            }
            _ => {
                let mut hash = [0u8; 32];
                match hex::decode_to_slice(value, &mut hash) {
                    Ok(()) => Ok(Self::Sha256(hash)),
                    Err(_) => Err(invalid_content_sha256()),
                }
            }
        }
    }

    /// The mode the server reads the body in. A streaming signed body's
    /// chain starts at the request signature (the seed).
    pub(crate) fn into_mode(
        self,
        key: &SigningKey,
        amz_date: &str,
        scope: &str,
        signature: [u8; 32],
    ) -> PayloadMode {
        match self {
            Self::Unsigned => PayloadMode::Unsigned,
            Self::Sha256(hash) => PayloadMode::Sha256(hash),
            Self::StreamingSigned { trailer } => PayloadMode::StreamingSigned {
                trailer,
                seed: ChunkSigningContext::new(key, amz_date, scope, signature),
            },
            Self::StreamingUnsignedTrailer => PayloadMode::StreamingUnsignedTrailer,
        }
    }
}

/// The payload-hash line of a presigned request: the `x-amz-content-sha256`
/// header, else the `X-Amz-Content-Sha256` query parameter (the JavaScript
/// SDK puts it there), else `UNSIGNED-PAYLOAD`.
pub(crate) fn presigned_payload_hash<'a>(
    header: Option<&'a [u8]>,
    query: Option<&'a str>,
) -> &'a [u8] {
    header
        .or(query.map(str::as_bytes))
        .unwrap_or(UNSIGNED_PAYLOAD.as_bytes())
}

/// S3's answer to an `x-amz-content-sha256` that is neither a hash nor a
/// known keyword.
pub(crate) fn invalid_content_sha256() -> AuthError {
    AuthError::InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, \
         STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER \
         or a valid sha256 value."
            .to_owned(),
    )
}

/// Compares the SHA-256 of a received body with the declared one
/// ([`PayloadMode::Sha256`]).
///
/// # Errors
/// `XAmzContentSHA256Mismatch` when they differ.
pub fn check_content_sha256(declared: &[u8; 32], computed: &[u8; 32]) -> Result<(), AuthError> {
    if bool::from(declared.ct_eq(computed)) {
        Ok(())
    } else {
        Err(AuthError::XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sigv4::EMPTY_SHA256_HEX;

    #[test]
    fn every_declared_form_is_recognized() {
        assert_eq!(
            ContentSha256::parse(b"UNSIGNED-PAYLOAD"),
            Ok(ContentSha256::Unsigned)
        );
        assert_eq!(
            ContentSha256::parse(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Ok(ContentSha256::StreamingSigned { trailer: false })
        );
        assert_eq!(
            ContentSha256::parse(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            Ok(ContentSha256::StreamingSigned { trailer: true })
        );
        assert_eq!(
            ContentSha256::parse(b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            Ok(ContentSha256::StreamingUnsignedTrailer)
        );
        let mut empty = [0u8; 32];
        hex::decode_to_slice(EMPTY_SHA256_HEX, &mut empty).unwrap();
        assert_eq!(
            ContentSha256::parse(EMPTY_SHA256_HEX.as_bytes()),
            Ok(ContentSha256::Sha256(empty))
        );
        assert_eq!(
            ContentSha256::parse(EMPTY_SHA256_HEX.to_uppercase().as_bytes()),
            Ok(ContentSha256::Sha256(empty))
        );
    }

    #[test]
    fn unsupported_and_unknown_forms_are_refused() {
        for value in [
            &b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"[..],
            b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
        ] {
            assert_eq!(
                ContentSha256::parse(value).unwrap_err().code(),
                "NotImplemented"
            );
        }
        for value in [
            &b""[..],
            b"unsigned-payload",
            b"STREAMING-PAYLOAD",
            b"e3b0c442",
            &[b'g'; 64],
        ] {
            assert_eq!(ContentSha256::parse(value), Err(invalid_content_sha256()));
        }
    }

    #[test]
    fn body_hash_mismatch_is_reported() {
        assert_eq!(check_content_sha256(&[1; 32], &[1; 32]), Ok(()));
        let error = check_content_sha256(&[1; 32], &[2; 32]).unwrap_err();
        assert_eq!(
            (error.code(), error.status()),
            ("XAmzContentSHA256Mismatch", 400)
        );
    }

    #[test]
    fn presigned_payload_hash_prefers_the_header() {
        assert_eq!(presigned_payload_hash(Some(b"h"), Some("q")), b"h");
        assert_eq!(presigned_payload_hash(None, Some("q")), b"q");
        assert_eq!(presigned_payload_hash(None, None), b"UNSIGNED-PAYLOAD");
    }
}
