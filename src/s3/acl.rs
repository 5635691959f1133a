//! Canned ACLs (`x-amz-acl`) on the requests that create buckets and
//! objects: `CreateBucket`, `PutObject`, `CopyObject` and
//! `CreateMultipartUpload`.
//!
//! ringstore has one tenant and no ACLs: every bucket and object belongs
//! to the owner and is reachable only with the configured keys. Two canned
//! ACLs say exactly that and are accepted: `private`, and
//! `bucket-owner-full-control`, the one canned ACL that AWS accepts even on
//! buckets with ACLs disabled (Object Ownership "bucket owner enforced",
//! the default for new buckets), which rclone and Hadoop's S3A send when
//! configured to. Every other canned ACL would grant something (public
//! reads, say) that this server cannot grant, so it is refused with
//! `501 NotImplemented` naming the header, as AWS names the header of a
//! feature it does not implement, rather than stored and ignored; ACLs
//! wait for the issue "Access control". The `x-amz-grant-*` headers and
//! the `?acl` operations are not handled here.
//!
//! - <https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html#canned-acl>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html>

use http::HeaderMap;

use crate::error::S3Error;
use crate::s3_error;

/// The header that carries a canned ACL.
pub const CANNED_ACL_HEADER: &str = "x-amz-acl";

/// The canned ACLs that grant nothing beyond what the owner has.
const ACCEPTED: [&str; 2] = ["private", "bucket-owner-full-control"];

/// Accept a request without `x-amz-acl` or with one of the canned ACLs in
/// [`ACCEPTED`]; refuse any other with `501 NotImplemented` naming the
/// header and its value.
pub fn check_canned_acl(headers: &HeaderMap) -> Result<(), S3Error> {
    let Some(value) = headers.get(CANNED_ACL_HEADER) else {
        return Ok(());
    };
    if ACCEPTED
        .iter()
        .any(|accepted| value.as_bytes() == accepted.as_bytes())
    {
        return Ok(());
    }
    let shown = String::from_utf8_lossy(value.as_bytes());
    Err(s3_error!(
        NotImplemented,
        "The {CANNED_ACL_HEADER} header value '{shown}' is not implemented by this server: \
         only the 'private' and 'bucket-owner-full-control' canned ACLs are accepted."
    )
    .with_extra("Header", CANNED_ACL_HEADER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;

    fn check(values: &[&str]) -> Result<(), S3Error> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CANNED_ACL_HEADER, value.parse().unwrap());
        }
        check_canned_acl(&headers)
    }

    #[test]
    fn private_and_bucket_owner_full_control_are_accepted_and_others_named() {
        assert!(check(&[]).is_ok());
        assert!(check(&["private"]).is_ok());
        assert!(check(&["bucket-owner-full-control"]).is_ok());
        for refused in [
            "public-read",
            "public-read-write",
            "authenticated-read",
            "Private",
            "",
        ] {
            let error = check(&[refused]).unwrap_err();
            assert_eq!(error.code, S3ErrorCode::NotImplemented, "{refused}");
            assert!(error.message.contains("x-amz-acl"), "{}", error.message);
            assert!(
                error.message.contains(&format!("'{refused}'")),
                "{}",
                error.message
            );
            assert_eq!(error.extra, [("Header", "x-amz-acl".to_owned())]);
        }
    }
}
