//! Client-side `SigV4`: the `Authorization` header for each request, and
//! presigned URLs (for driving wrk over the same objects).
//!
//! The canonical request follows the AWS specification for S3: the path is
//! percent-encoded once (everything but unreserved characters and `/`), the
//! query is sorted by name then value with `/` encoded too, and the payload
//! is `UNSIGNED-PAYLOAD`, so that a body is never hashed twice (the server
//! hashes it for the `ETag` anyway). The signing key is derived once per day.

use std::fmt::Write as _;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Everything but the unreserved characters of RFC 3986.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As [`QUERY`], and `/` stays as it is (S3 paths are not double-encoded).
const PATH: &AsciiSet = &QUERY.remove(b'/');

pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Percent-encode an object key or bucket for the request path.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// Percent-encode one query name or value.
pub fn encode_query(text: &str) -> String {
    utf8_percent_encode(text, QUERY).to_string()
}

/// A canonical query string from name/value pairs (unencoded), sorted.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| (encode_query(name), encode_query(value)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (index, (name, value)) in encoded.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The request time in both forms `SigV4` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// `YYYYMMDDTHHMMSSZ`
    pub amz_date: String,
    /// `YYYYMMDD`
    pub date: String,
}

impl Stamp {
    pub fn at(time: SystemTime) -> Self {
        let seconds = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        let moment = time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let date = format!(
            "{:04}{:02}{:02}",
            moment.year(),
            u8::from(moment.month()),
            moment.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            moment.hour(),
            moment.minute(),
            moment.second()
        );
        Self { amz_date, date }
    }
}

/// Signs requests for one access key, region and service `s3`.
pub struct Signer {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    /// The day the cached key is for, and the key.
    key_cache: Option<(String, [u8; 32])>,
}

impl Signer {
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            region: region.to_owned(),
            key_cache: None,
        }
    }

    fn signing_key(&mut self, date: &str) -> [u8; 32] {
        if let Some((day, key)) = &self.key_cache
            && day == date
        {
            return *key;
        }
        let secret = format!("AWS4{}", self.secret_access_key);
        let mut key = hmac(secret.as_bytes(), date.as_bytes());
        for part in [self.region.as_bytes(), b"s3", b"aws4_request"] {
            key = hmac(&key, part);
        }
        self.key_cache = Some((date.to_owned(), key));
        key
    }

    fn scope(&self, date: &str) -> String {
        format!("{date}/{}/s3/aws4_request", self.region)
    }

    /// The `Authorization` header value for a request whose signed headers
    /// are `headers` (lower-case names, sorted by the caller is not needed).
    /// `headers` must include `host`, `x-amz-date` and `x-amz-content-sha256`.
    pub fn authorization(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        headers: &mut [(&str, &str)],
        stamp: &Stamp,
    ) -> String {
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut canonical = String::with_capacity(256);
        let mut signed = String::with_capacity(64);
        let _ = write!(canonical, "{method}\n{path}\n{query}\n");
        for (index, (name, value)) in headers.iter().enumerate() {
            let _ = writeln!(canonical, "{name}:{}", value.trim());
            if index > 0 {
                signed.push(';');
            }
            signed.push_str(name);
        }
        let payload = headers
            .iter()
            .find(|(name, _)| *name == "x-amz-content-sha256")
            .map_or(UNSIGNED_PAYLOAD, |(_, value)| value);
        let _ = write!(canonical, "\n{signed}\n{payload}");
        let signature = self.signature(&canonical, stamp);
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed}, Signature={signature}",
            self.access_key_id,
            self.scope(&stamp.date)
        )
    }

    fn signature(&mut self, canonical_request: &str, stamp: &Stamp) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            stamp.amz_date,
            self.scope(&stamp.date),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = self.signing_key(&stamp.date);
        hex::encode(hmac(&key, string_to_sign.as_bytes()))
    }

    /// A presigned GET URL: `http://{host}{path}?X-Amz-...&X-Amz-Signature=...`.
    pub fn presign_get(
        &mut self,
        scheme_host: &str,
        host: &str,
        path: &str,
        expires_seconds: u32,
        stamp: &Stamp,
    ) -> String {
        let credential = format!("{}/{}", self.access_key_id, self.scope(&stamp.date));
        let expires = expires_seconds.to_string();
        let query = query_string(&[
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", &credential),
            ("X-Amz-Date", &stamp.amz_date),
            ("X-Amz-Expires", &expires),
            ("X-Amz-SignedHeaders", "host"),
        ]);
        let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\n{UNSIGNED_PAYLOAD}");
        let signature = self.signature(&canonical, stamp);
        format!("{scheme_host}{path}?{query}&X-Amz-Signature={signature}")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `GetObject` example of the AWS `SigV4` documentation.
    #[test]
    fn signs_the_aws_get_object_example() {
        let mut signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let stamp = Stamp {
            amz_date: "20130524T000000Z".into(),
            date: "20130524".into(),
        };
        let mut headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            (
                "x-amz-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let authorization = signer.authorization("GET", "/test.txt", "", &mut headers, &stamp);
        assert!(authorization.ends_with(
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        ));
        assert!(authorization.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"));
    }

    /// The presigned-URL example of the AWS `SigV4` documentation.
    #[test]
    fn presigns_the_aws_example() {
        let mut signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let stamp = Stamp {
            amz_date: "20130524T000000Z".into(),
            date: "20130524".into(),
        };
        let url = signer.presign_get(
            "https://examplebucket.s3.amazonaws.com",
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            86400,
            &stamp,
        );
        assert!(url.ends_with(
            "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        ));
    }

    #[test]
    fn stamps_and_encodings() {
        let stamp = Stamp::at(SystemTime::UNIX_EPOCH + std::time::Duration::from_hours(380_376));
        assert_eq!(stamp.amz_date, "20130524T000000Z");
        assert_eq!(encode_path("/b/a b/ü~"), "/b/a%20b/%C3%BC~");
        assert_eq!(
            query_string(&[("prefix", "a/b"), ("list-type", "2")]),
            "list-type=2&prefix=a%2Fb"
        );
    }
}
