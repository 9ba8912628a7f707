//! Object tag sets as S3 takes them, from the XML of PutObjectTagging or the `x-amz-tagging`
//! header (a URL-encoded query string), validated as AWS validates them.

use s3s::dto::Tag;

use crate::index::records::ObjectTags;

/// Most tags on one object (S3: 10).
pub const MAX_TAGS: usize = 10;
/// Longest tag key, in UTF-16 code units as S3 counts them.
pub const MAX_KEY_LEN: usize = 128;
/// Longest tag value, in UTF-16 code units.
pub const MAX_VALUE_LEN: usize = 256;

/// Why a tag set was refused; the messages are AWS's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// More than [`MAX_TAGS`] tags (`BadRequest`).
    #[error("Object tags cannot be greater than 10")]
    TooMany,
    /// A key that is empty, too long or has characters S3 does not allow (`InvalidTag`).
    #[error("The TagKey you have provided is invalid")]
    InvalidKey,
    /// A value that is too long or has characters S3 does not allow (`InvalidTag`).
    #[error("The TagValue you have provided is invalid")]
    InvalidValue,
    /// A key in the reserved `aws:` namespace (`InvalidTag`).
    #[error("Your TagKey cannot be prefixed with aws:")]
    SystemKey,
    /// The same key twice in a PutObjectTagging body (`InvalidTag`).
    #[error("Cannot provide multiple Tags with the same key")]
    DuplicateKey,
    /// An `x-amz-tagging` header that does not decode, or repeats a key (`InvalidArgument`).
    #[error(
        "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."
    )]
    MalformedHeader,
    /// A tag without a key in the XML body (`MalformedXML`).
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema"
    )]
    MalformedXml,
}

/// S3's tag alphabet: Unicode letters, digits and spaces, and `_ . : / = + - @`.
fn allowed(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_alphanumeric()
            || (c.is_whitespace() && !c.is_control())
            || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
    })
}

/// Checks one tag and adds it; `duplicate` is the error for a key already present.
fn insert(
    tags: &mut ObjectTags,
    key: String,
    value: String,
    duplicate: TagError,
) -> Result<(), TagError> {
    let key_len = key.encode_utf16().count();
    if key_len == 0 || key_len > MAX_KEY_LEN || !allowed(&key) {
        return Err(TagError::InvalidKey);
    }
    if key.starts_with("aws:") {
        return Err(TagError::SystemKey);
    }
    if value.encode_utf16().count() > MAX_VALUE_LEN || !allowed(&value) {
        return Err(TagError::InvalidValue);
    }
    if tags.insert(key, value).is_some() {
        return Err(duplicate);
    }
    Ok(())
}

/// The tag set of a PutObjectTagging body (a tag without a value has the empty value).
pub fn from_xml(set: &[Tag]) -> Result<ObjectTags, TagError> {
    if set.len() > MAX_TAGS {
        return Err(TagError::TooMany);
    }
    let mut tags = ObjectTags::new();
    for t in set {
        let key = t.key.clone().ok_or(TagError::MalformedXml)?;
        let value = t.value.clone().unwrap_or_default();
        insert(&mut tags, key, value, TagError::DuplicateKey)?;
    }
    Ok(tags)
}

/// The tag set of an `x-amz-tagging` header: `k1=v1&k2=v2`, form-URL-encoded (`+` is a space);
/// `k` alone has the empty value. Absent: no tags.
pub fn from_header(header: Option<&str>) -> Result<ObjectTags, TagError> {
    let Some(header) = header else {
        return Ok(ObjectTags::new());
    };
    let mut pairs = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((
            url_decode(k).ok_or(TagError::MalformedHeader)?,
            url_decode(v).ok_or(TagError::MalformedHeader)?,
        ));
    }
    if pairs.len() > MAX_TAGS {
        return Err(TagError::TooMany);
    }
    let mut tags = ObjectTags::new();
    for (k, v) in pairs {
        insert(&mut tags, k, v, TagError::MalformedHeader)?;
    }
    Ok(tags)
}

/// A tag set as s3s carries it.
pub fn to_xml(tags: &ObjectTags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text; `None` for a bad `%` escape or bytes that
/// are not UTF-8.
fn url_decode(s: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn headers_decode_as_query_strings() {
        let t = from_header(Some("a=1&b+c=x%2Fy&&empty=&k")).unwrap();
        let want: ObjectTags = [("a", "1"), ("b c", "x/y"), ("empty", ""), ("k", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(t, want);
        assert_eq!(from_header(None).unwrap(), ObjectTags::new());
        assert_eq!(from_header(Some("")).unwrap(), ObjectTags::new());
        assert_eq!(
            from_header(Some("k=caf%C3%A9")).unwrap()["k"],
            "café".to_string()
        );
        for bad in ["a=%zz", "a=%2", "a=%", "a=%FF", "a=1&a=2", "a=%+1"] {
            assert_eq!(
                from_header(Some(bad)),
                Err(TagError::MalformedHeader),
                "{bad}"
            );
        }
        assert_eq!(from_header(Some("=v")), Err(TagError::InvalidKey));
        assert_eq!(from_header(Some("aws:x=1")), Err(TagError::SystemKey));
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(from_header(Some(&eleven.join("&"))), Err(TagError::TooMany));
        assert_eq!(
            from_header(Some(&eleven[..10].join("&"))).unwrap().len(),
            10
        );
    }

    #[test]
    fn xml_tag_sets_are_validated_as_aws_does() {
        let ok = from_xml(&[tag("b", "2"), tag("a", "")]).unwrap();
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(to_xml(&ok), vec![tag("a", ""), tag("b", "2")]);
        assert_eq!(from_xml(&[]).unwrap(), ObjectTags::new());
        let eleven: Vec<Tag> = (0..11).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(from_xml(&eleven), Err(TagError::TooMany));
        assert_eq!(
            from_xml(&[tag("a", "1"), tag("a", "2")]),
            Err(TagError::DuplicateKey)
        );
        assert_eq!(from_xml(&[tag("aws:x", "1")]), Err(TagError::SystemKey));
        assert!(
            from_xml(&[tag("x:aws:y", "1")]).is_ok(),
            "only a prefix is reserved"
        );
        assert_eq!(from_xml(&[tag("", "1")]), Err(TagError::InvalidKey));
        assert_eq!(
            from_xml(&[Tag {
                key: None,
                value: Some("v".into())
            }]),
            Err(TagError::MalformedXml)
        );
        // Lengths count characters (UTF-16 units), not bytes.
        assert!(from_xml(&[tag(&"é".repeat(128), &"é".repeat(256))]).is_ok());
        assert_eq!(
            from_xml(&[tag(&"k".repeat(129), "")]),
            Err(TagError::InvalidKey)
        );
        assert_eq!(
            from_xml(&[tag("k", &"v".repeat(257))]),
            Err(TagError::InvalidValue)
        );
        // The alphabet: letters, digits, spaces and _ . : / = + - @.
        assert!(from_xml(&[tag("Ünïcode 42_.:/=+-@", "naïve value\u{3000}")]).is_ok());
        for bad in ["a,b", "a;b", "a?b", "a*b", "a#b", "a%b", "a\tb", "😀"] {
            assert_eq!(
                from_xml(&[tag(bad, "v")]),
                Err(TagError::InvalidKey),
                "{bad}"
            );
            assert_eq!(
                from_xml(&[tag("k", bad)]),
                Err(TagError::InvalidValue),
                "{bad}"
            );
        }
    }
}
