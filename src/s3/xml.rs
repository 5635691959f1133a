//! S3 XML bodies, named after the AWS elements.
//!
//! Responses are small, fixed-shape documents, so they are written straight
//! into a `String` with [`escape_into`] for every piece of text, which keeps
//! the hot listing paths free of intermediate trees. Request bodies are
//! parsed with quick-xml's pull reader, which never builds a document in
//! memory either; unknown elements are ignored as AWS does, but a body that
//! is not well-formed XML is `MalformedXML`.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html>

use quick_xml::events::Event;

use crate::error::S3Error;
use crate::s3_error;

pub const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
pub const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub use crate::error::escape_into;

/// Unix milliseconds as AWS writes timestamps in XML: `2009-10-12T17:50:30.000Z`.
#[must_use]
pub fn timestamp(unix_ms: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time.format(&format).expect("timestamp formats")
}

/// Write `<Name>text</Name>` with the text escaped.
pub fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

pub use crate::auth::Owner;

/// One bucket in `ListAllMyBucketsResult`.
pub struct ListedBucket<'a> {
    pub name: &'a str,
    pub created_ms: i64,
    pub region: &'a str,
}

/// `ListAllMyBucketsResult`, the `ListBuckets` response.
#[must_use]
pub fn list_all_my_buckets_result(
    owner: &Owner,
    buckets: &[ListedBucket<'_>],
    continuation_token: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let mut out = String::with_capacity(256 + buckets.len() * 128);
    out.push_str(XML_DECLARATION);
    out.push_str("<ListAllMyBucketsResult xmlns=\"");
    out.push_str(S3_NAMESPACE);
    out.push_str("\"><Owner>");
    element(&mut out, "ID", &owner.id);
    element(&mut out, "DisplayName", &owner.display_name);
    out.push_str("</Owner><Buckets>");
    for bucket in buckets {
        out.push_str("<Bucket>");
        element(&mut out, "Name", bucket.name);
        element(&mut out, "CreationDate", &timestamp(bucket.created_ms));
        element(&mut out, "BucketRegion", bucket.region);
        out.push_str("</Bucket>");
    }
    out.push_str("</Buckets>");
    if let Some(token) = continuation_token {
        element(&mut out, "ContinuationToken", token);
    }
    if let Some(prefix) = prefix {
        element(&mut out, "Prefix", prefix);
    }
    out.push_str("</ListAllMyBucketsResult>");
    out
}

/// `LocationConstraint`, the `GetBucketLocation` response. AWS answers an
/// empty element for us-east-1 (for historical reasons) and the region name
/// otherwise.
#[must_use]
pub fn location_constraint(region: &str) -> String {
    let mut out = String::with_capacity(160);
    out.push_str(XML_DECLARATION);
    out.push_str("<LocationConstraint xmlns=\"");
    out.push_str(S3_NAMESPACE);
    if region == "us-east-1" {
        out.push_str("\"/>");
    } else {
        out.push_str("\">");
        escape_into(&mut out, region);
        out.push_str("</LocationConstraint>");
    }
    out
}

/// The parts of a `CreateBucketConfiguration` body ringstore looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CreateBucketConfiguration {
    pub location_constraint: Option<String>,
}

/// Parse a `CreateBucket` body. An empty body (or only white space) is no
/// configuration, as AWS allows. The constraint's text is taken whole
/// (entity and character references resolved, as [`walk`] does) and
/// trimmed of surrounding white space.
pub fn parse_create_bucket_configuration(
    body: &[u8],
) -> Result<CreateBucketConfiguration, S3Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateBucketConfiguration::default());
    }
    let mut config = CreateBucketConfiguration::default();
    walk(body, "CreateBucketConfiguration", |event| {
        if let XmlEvent::Leaf(path, text) = event
            && path == ["LocationConstraint"]
        {
            let text = text.trim_matches([' ', '\t', '\r', '\n']);
            config.location_constraint = Some(text.to_owned());
        }
        Ok(())
    })?;
    Ok(config)
}

/// What [`walk`] reports, with the path of element names below the root.
#[derive(Debug, PartialEq, Eq)]
pub enum XmlEvent<'a> {
    /// An element starts.
    Open(&'a [String]),
    /// An element without child elements ends; its text, entities
    /// resolved, white space kept.
    Leaf(&'a [String], String),
}

/// The `MalformedXML` error, with AWS's message.
#[must_use]
pub fn malformed_xml() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

/// Walk a request body whose root element must be `root`, calling `visit`
/// for each element below it: when it opens, and with its text when it is
/// a leaf. Namespaces are ignored (AWS accepts the documents with and
/// without its namespace); text is kept exactly, since keys may begin or
/// end with white space; entity and character references are resolved.
/// A body that is not well-formed, has another root, or text outside the
/// leaves is `MalformedXML`.
pub fn walk(
    body: &[u8],
    root: &str,
    mut visit: impl FnMut(XmlEvent<'_>) -> Result<(), S3Error>,
) -> Result<(), S3Error> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut saw_root = false;
    let mut text = String::new();
    // Whether the innermost open element has child elements.
    let mut has_children = false;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|_| malformed_xml())?;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let name = std::str::from_utf8(start.local_name().as_ref())
                    .map_err(|_| malformed_xml())?
                    .to_owned();
                if !saw_root {
                    if name != root {
                        return Err(malformed_xml());
                    }
                    saw_root = true;
                    if is_empty {
                        path.push(name);
                        path.pop();
                        continue_after_root(&mut reader)?;
                        return Ok(());
                    }
                    path.push(name);
                    has_children = false;
                    text.clear();
                    continue;
                }
                if path.is_empty() {
                    return Err(malformed_xml());
                }
                if !text.trim().is_empty() {
                    return Err(malformed_xml());
                }
                path.push(name);
                visit(XmlEvent::Open(&path[1..]))?;
                if is_empty {
                    visit(XmlEvent::Leaf(&path[1..], String::new()))?;
                    path.pop();
                    has_children = true;
                } else {
                    has_children = false;
                }
                text.clear();
            }
            Event::End(_) => {
                if path.len() > 1 && !has_children {
                    visit(XmlEvent::Leaf(&path[1..], std::mem::take(&mut text)))?;
                } else if !text.trim().is_empty() {
                    return Err(malformed_xml());
                }
                text.clear();
                path.pop();
                has_children = true;
                if path.is_empty() {
                    continue_after_root(&mut reader)?;
                    return Ok(());
                }
            }
            Event::Text(content) => {
                if path.is_empty() {
                    if !content.iter().all(u8::is_ascii_whitespace) {
                        return Err(malformed_xml());
                    }
                } else {
                    text.push_str(&content.decode().map_err(|_| malformed_xml())?);
                }
            }
            Event::CData(content) => {
                text.push_str(&content.decode().map_err(|_| malformed_xml())?);
            }
            Event::GeneralRef(reference) => {
                if let Some(ch) = reference.resolve_char_ref().map_err(|_| malformed_xml())? {
                    text.push(ch);
                } else {
                    let name = reference.decode().map_err(|_| malformed_xml())?;
                    text.push(match name.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => return Err(malformed_xml()),
                    });
                }
            }
            Event::Eof => return Err(malformed_xml()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
}

/// After the root element ends, only white space, comments and processing
/// instructions may follow.
fn continue_after_root(reader: &mut quick_xml::Reader<&[u8]>) -> Result<(), S3Error> {
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|_| malformed_xml())?
        {
            Event::Eof => return Ok(()),
            Event::Text(content) if content.iter().all(u8::is_ascii_whitespace) => {}
            Event::Comment(_) | Event::PI(_) => {}
            _ => return Err(malformed_xml()),
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(body: &[u8], root: &str) -> Result<Vec<String>, S3Error> {
        let mut out = Vec::new();
        walk(body, root, |event| {
            match event {
                XmlEvent::Open(path) => out.push(format!("open {}", path.join("/"))),
                XmlEvent::Leaf(path, text) => out.push(format!("{}={text}", path.join("/"))),
            }
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn walk_reports_leaves_with_exact_text() {
        let body = br#"<?xml version="1.0"?>
            <Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Object><Key> a&amp;b &#13;&#x41;&quot;&apos;&lt;&gt; </Key></Object>
              <Object><Key><![CDATA[c<d]]></Key><VersionId/></Object>
              <Quiet>true</Quiet>
            </Delete>"#;
        assert_eq!(
            leaves(body, "Delete").unwrap(),
            [
                "open Object",
                "open Object/Key",
                "Object/Key= a&b \rA\"'<> ",
                "open Object",
                "open Object/Key",
                "Object/Key=c<d",
                "open Object/VersionId",
                "Object/VersionId=",
                "open Quiet",
                "Quiet=true",
            ]
        );
        assert_eq!(
            leaves(b"<Delete/>", "Delete").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn walk_refuses_what_is_not_one_document() {
        for body in [
            &b""[..],
            b"not xml",
            b"<Other/>",
            b"<Delete>",
            b"<Delete></Other>",
            b"<Delete/><Delete/>",
            b"<Delete>text<Object/></Delete>",
            b"<Delete><Object>x<Key>k</Key></Object></Delete>",
            b"<Delete><Key>&unknown;</Key></Delete>",
            b"<Delete></Delete>trailing",
        ] {
            assert!(leaves(body, "Delete").is_err(), "{body:?}");
        }
    }

    #[test]
    fn escape_covers_markup_and_control_characters() {
        let mut out = String::new();
        escape_into(&mut out, "a&b<c>d\"e'f\r\ng\th\u{1}é");
        assert_eq!(out, "a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;\ng\th&#1;é");
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_369_353_600_123), "2013-05-24T00:00:00.123Z");
    }

    #[test]
    fn list_all_my_buckets_result_golden() {
        let owner = Owner {
            id: "abc".into(),
            display_name: "me".into(),
        };
        let xml = list_all_my_buckets_result(
            &owner,
            &[ListedBucket {
                name: "b1",
                created_ms: 0,
                region: "us-east-1",
            }],
            None,
            None,
        );
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>abc</ID>\
             <DisplayName>me</DisplayName></Owner><Buckets><Bucket><Name>b1</Name>\
             <CreationDate>1970-01-01T00:00:00.000Z</CreationDate>\
             <BucketRegion>us-east-1</BucketRegion></Bucket></Buckets>\
             </ListAllMyBucketsResult>"
        );
    }

    #[test]
    fn location_constraint_golden() {
        assert_eq!(
            location_constraint("us-east-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"
        );
        assert_eq!(
            location_constraint("eu-west-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">eu-west-1</LocationConstraint>"
        );
    }

    #[test]
    fn create_bucket_configuration_parses() {
        let body = br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"#;
        assert_eq!(
            parse_create_bucket_configuration(body).unwrap(),
            CreateBucketConfiguration {
                location_constraint: Some("eu-west-1".into())
            }
        );
        assert_eq!(
            parse_create_bucket_configuration(b"").unwrap(),
            CreateBucketConfiguration::default()
        );
        assert_eq!(
            parse_create_bucket_configuration(b"<CreateBucketConfiguration/>").unwrap(),
            CreateBucketConfiguration::default()
        );
    }

    #[test]
    fn location_constraint_with_references_is_read_whole() {
        // Regression (found by the `xml_bodies` fuzz target's round trip of
        // escaped text): quick-xml reports `&amp;` and `&#..;` as events of
        // their own between text pieces, and the parser kept only the last
        // piece, so `x&amp;eu-west-1` read as `eu-west-1`: a constraint AWS
        // refuses was taken for this server's region.
        let body = b"<CreateBucketConfiguration><LocationConstraint>x&amp;eu-west-1</LocationConstraint></CreateBucketConfiguration>";
        assert_eq!(
            parse_create_bucket_configuration(body)
                .unwrap()
                .location_constraint
                .as_deref(),
            Some("x&eu-west-1")
        );
        let body = b"<CreateBucketConfiguration><LocationConstraint> eu&#45;west-1\n</LocationConstraint></CreateBucketConfiguration>";
        assert_eq!(
            parse_create_bucket_configuration(body)
                .unwrap()
                .location_constraint
                .as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn malformed_create_bucket_configuration_is_refused() {
        for body in [
            &b"<CreateBucketConfiguration>"[..],
            b"<Other/>",
            b"not xml",
            b"<CreateBucketConfiguration></Wrong>",
            b"<CreateBucketConfiguration/><CreateBucketConfiguration/>",
        ] {
            let error = parse_create_bucket_configuration(body).unwrap_err();
            assert_eq!(
                error.code,
                crate::error::S3ErrorCode::MalformedXML,
                "{body:?}"
            );
        }
    }
}
