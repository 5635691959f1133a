//! Checks of the XML request bodies the S3 handlers parse.

use super::Input;
use crate::s3::delete::{DELETE_OBJECTS_KEYS_MAX, parse_delete};
use crate::s3::multipart::parse_complete;
use crate::s3::xml::{self, XmlEvent, escape_into, parse_create_bucket_configuration};

/// Target `xml_bodies`: every XML body a request can carry —
/// `CreateBucketConfiguration` (CreateBucket), `Delete` (DeleteObjects) and
/// `CompleteMultipartUpload` — and the generic `xml::walk` under them.
///
/// The first byte picks a mode. Mode 0 feeds the rest, as is, to every
/// parser: no panic, and an accepted body satisfies the parser's promises
/// (at least one and at most 1,000 keys, every part numbered and
/// ETagged). Mode 1 takes the rest as text and sends it through the
/// response-side escaping ([`escape_into`]) into each request body: the
/// parsers must give back exactly that text, since clients echo keys and
/// ETags they got from us (for text that XML 1.0 can carry at all).
pub fn xml_bodies(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let body = input.rest();
    match mode {
        1 => {
            if let Ok(text) = std::str::from_utf8(body) {
                round_trip(text);
            }
        }
        _ => parse_all(body),
    }
}

fn parse_all(body: &[u8]) {
    if let Ok(configuration) = parse_create_bucket_configuration(body)
        && let Some(location) = configuration.location_constraint
    {
        let _ = location.len();
    }
    if let Ok((objects, _quiet)) = parse_delete(body) {
        assert!(!objects.is_empty());
        assert!(objects.len() <= DELETE_OBJECTS_KEYS_MAX);
        assert!(objects.iter().all(|object| object.key.is_some()));
    }
    if let Ok(parts) = parse_complete(body) {
        assert!(!parts.is_empty());
        assert!(
            parts
                .iter()
                .all(|part| part.number.is_some() && part.etag.is_some())
        );
    }
    for root in ["Delete", "Tagging", "VersioningConfiguration"] {
        let mut depth_seen = 0;
        let _ = xml::walk(body, root, |event| {
            match event {
                XmlEvent::Open(path) | XmlEvent::Leaf(path, _) => {
                    assert!(!path.is_empty());
                    depth_seen = depth_seen.max(path.len());
                }
            }
            Ok(())
        });
    }
}

/// Whether XML 1.0 can carry `ch` at all (its `Char` production): other
/// control characters cannot be written even as references, so a key
/// holding one cannot travel in an XML body (AWS's own DeleteObjects has
/// the same limit; listings offer `encoding-type=url` for such keys).
fn is_xml_char(ch: char) -> bool {
    matches!(ch, '\t' | '\n' | '\r') || (ch >= ' ' && !matches!(ch, '\u{fffe}' | '\u{ffff}'))
}

fn round_trip(text: &str) {
    let mut escaped = String::new();
    escape_into(&mut escaped, text);
    if !text.chars().all(is_xml_char) {
        // Not representable: the parsers may refuse it, but must not panic.
        parse_all(format!("<Delete><Object><Key>{escaped}</Key></Object></Delete>").as_bytes());
        return;
    }

    let delete = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"{}\"><Object><Key>{escaped}</Key><VersionId>{escaped}</VersionId></Object><Quiet>true</Quiet></Delete>",
        xml::S3_NAMESPACE
    );
    let (objects, quiet) = parse_delete(delete.as_bytes())
        .unwrap_or_else(|error| panic!("{delete:?} is refused: {error:?}"));
    assert!(quiet);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].key.as_deref(), Some(text), "key of {delete:?}");
    assert_eq!(objects[0].version_id.as_deref(), Some(text));

    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{escaped}</ETag></Part></CompleteMultipartUpload>"
    );
    let parts = parse_complete(complete.as_bytes())
        .unwrap_or_else(|error| panic!("{complete:?} is refused: {error:?}"));
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].number, Some(1));
    assert_eq!(parts[0].etag.as_deref(), Some(text));

    // CreateBucketConfiguration trims white space around text.
    let location = format!(
        "<CreateBucketConfiguration><LocationConstraint>{escaped}</LocationConstraint></CreateBucketConfiguration>"
    );
    if let Ok(configuration) = parse_create_bucket_configuration(location.as_bytes())
        && !text.is_empty()
        && text.trim_matches([' ', '\t', '\r', '\n']) == text
    {
        assert_eq!(configuration.location_constraint.as_deref(), Some(text));
    }
}
