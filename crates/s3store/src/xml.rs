//! The XML bodies S3 speaks: the replies we read (a listing page, an error, a new upload's id)
//! and the one body we write (the part list that completes an upload); pure, no I/O.
//!
//! quick-xml's serde support reads them into plain structs that name only the tags we use, so
//! a server adding tags (SeaweedFS, MinIO and AWS all do) changes nothing.

use std::time::SystemTime;

use quick_xml::events::Event;
use serde::Deserialize;

use crate::error::S3Error;

/// An S3 `<Error>` body's code and message.
#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// One page of ListObjectsV2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ListPage {
    /// `(key, size, last modified)` for each object, in key order.
    pub objects: Vec<(String, u64, SystemTime)>,
    /// The common prefixes (directories), each ending in the delimiter.
    pub prefixes: Vec<String>,
    /// Where the next page starts, when this one was truncated.
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    last_modified: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateMultipartUploadResult {
    upload_id: String,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key (relative to the store's prefix) the upload would create.
    pub key: String,
    /// The id S3 gave the upload.
    pub upload_id: String,
}

/// One page of ListMultipartUploads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UploadsPage {
    /// `(key, upload id)` of each pending upload.
    pub uploads: Vec<(String, String)>,
    /// `(key marker, upload id marker)` of the next page, when this one was truncated.
    pub next: Option<(String, String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    upload: Vec<Upload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
}

fn unreadable(what: &str, error: impl std::fmt::Display) -> S3Error {
    S3Error::Protocol(format!("{what}: {error}"))
}

/// The name of the first element, to tell an `<Error>` from the reply we expected: S3 may
/// answer CompleteMultipartUpload and CopyObject with `200 OK` and an error body.
pub(crate) fn root_name(body: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start) | Event::Empty(start)) => {
                return Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned())
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The code and message of an `<Error>` body; `None` when the body is not one (a HEAD reply
/// has no body at all).
pub(crate) fn parse_error(body: &str) -> Option<ErrorBody> {
    if root_name(body).as_deref() != Some("Error") {
        return None;
    }
    quick_xml::de::from_str(body).ok()
}

/// Reads one ListObjectsV2 page.
pub(crate) fn parse_list_page(body: &str) -> Result<ListPage, S3Error> {
    let result: ListBucketResult =
        quick_xml::de::from_str(body).map_err(|error| unreadable("ListObjectsV2 reply", error))?;
    let objects = result
        .contents
        .into_iter()
        .map(|object| {
            let modified = parse_iso8601(&object.last_modified)?;
            Ok((object.key, object.size, modified))
        })
        .collect::<Result<Vec<_>, S3Error>>()?;
    let next_token = match (result.is_truncated, result.next_continuation_token) {
        (false, _) => None,
        (true, Some(token)) if !token.is_empty() => Some(token),
        (true, _) => {
            return Err(S3Error::Protocol(
                "truncated ListObjectsV2 reply without a NextContinuationToken".into(),
            ))
        }
    };
    Ok(ListPage {
        objects,
        prefixes: result
            .common_prefixes
            .into_iter()
            .map(|prefix| prefix.prefix)
            .collect(),
        next_token,
    })
}

/// The upload id from an InitiateMultipartUploadResult.
pub(crate) fn parse_upload_id(body: &str) -> Result<String, S3Error> {
    let result: InitiateMultipartUploadResult = quick_xml::de::from_str(body)
        .map_err(|error| unreadable("CreateMultipartUpload reply", error))?;
    if result.upload_id.is_empty() {
        return Err(S3Error::Protocol(
            "CreateMultipartUpload reply has an empty UploadId".into(),
        ));
    }
    Ok(result.upload_id)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopyPartResult {
    #[serde(rename = "ETag")]
    etag: String,
}

/// The ETag of a part copied with UploadPartCopy, from its CopyPartResult.
pub(crate) fn parse_copy_part_etag(body: &str) -> Result<String, S3Error> {
    let result: CopyPartResult =
        quick_xml::de::from_str(body).map_err(|error| unreadable("UploadPartCopy reply", error))?;
    Ok(result.etag)
}

/// Reads one ListMultipartUploads page.
pub(crate) fn parse_uploads_page(body: &str) -> Result<UploadsPage, S3Error> {
    let result: ListMultipartUploadsResult = quick_xml::de::from_str(body)
        .map_err(|error| unreadable("ListMultipartUploads reply", error))?;
    let next = if result.is_truncated {
        Some((
            result.next_key_marker.unwrap_or_default(),
            result.next_upload_id_marker.unwrap_or_default(),
        ))
    } else {
        None
    };
    Ok(UploadsPage {
        uploads: result
            .upload
            .into_iter()
            .map(|upload| (upload.key, upload.upload_id))
            .collect(),
        next,
    })
}

/// The CompleteMultipartUpload body: every part's number and ETag, in order.
pub(crate) fn complete_body(parts: &[(u32, String)]) -> String {
    let mut body = String::from("<CompleteMultipartUpload>");
    for (number, etag) in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            quick_xml::escape::escape(etag.as_str())
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// An S3 listing time, e.g. `2009-10-12T17:50:30.000Z`.
pub(crate) fn parse_iso8601(text: &str) -> Result<SystemTime, S3Error> {
    text.parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|error| unreadable(&format!("time '{text}'"), error))
}

/// An HTTP date, as in `Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT`.
pub(crate) fn parse_http_date(text: &str) -> Result<SystemTime, S3Error> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .map(SystemTime::from)
        .map_err(|error| unreadable(&format!("date '{text}'"), error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>ftp/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
  <Contents><Key>ftp/a &amp; b.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>
    <ETag>"abc"</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <CommonPrefixes><Prefix>ftp/dir/</Prefix></CommonPrefixes>
  <Contents><Key>ftp/z</Key><LastModified>2024-01-02T03:04:05Z</LastModified><Size>0</Size></Contents>
  <NextContinuationToken>tok+/=</NextContinuationToken>
</ListBucketResult>"#;

    #[test]
    fn a_listing_page_reads_objects_prefixes_and_token() {
        let page = parse_list_page(PAGE).unwrap();
        let when = UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        assert_eq!(
            page.objects,
            vec![
                ("ftp/a & b.txt".to_owned(), 12, when),
                ("ftp/z".to_owned(), 0, when)
            ]
        );
        assert_eq!(page.prefixes, vec!["ftp/dir/".to_owned()]);
        assert_eq!(page.next_token.as_deref(), Some("tok+/="));
    }

    #[test]
    fn an_empty_last_page_has_no_token() {
        let page = parse_list_page(
            "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
        )
        .unwrap();
        assert!(page.objects.is_empty() && page.prefixes.is_empty());
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn a_truncated_page_without_a_token_is_a_protocol_error() {
        let error =
            parse_list_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
                .unwrap_err();
        assert!(matches!(error, S3Error::Protocol(_)), "{error:?}");
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        for body in [
            "",
            "not xml",
            "<ListBucketResult><Contents><Key>k</Key></Contents>",
            "<a",
        ] {
            assert!(
                matches!(parse_list_page(body), Err(S3Error::Protocol(_))),
                "{body}"
            );
            assert!(
                matches!(parse_upload_id(body), Err(S3Error::Protocol(_))),
                "{body}"
            );
        }
        let bad_time = "<ListBucketResult><Contents><Key>k</Key><Size>1</Size>\
            <LastModified>yesterday</LastModified></Contents></ListBucketResult>";
        assert!(matches!(
            parse_list_page(bad_time),
            Err(S3Error::Protocol(_))
        ));
    }

    #[test]
    fn error_bodies_are_recognized() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code>\
            <Message>The specified key does not exist.</Message><Key>x</Key></Error>";
        assert_eq!(
            parse_error(body),
            Some(ErrorBody {
                code: "NoSuchKey".into(),
                message: "The specified key does not exist.".into()
            })
        );
        assert_eq!(parse_error(""), None);
        assert_eq!(parse_error(PAGE), None);
    }

    #[test]
    fn upload_ids_and_pending_uploads_are_read() {
        let created = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
            <UploadId>id-1</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(parse_upload_id(created).unwrap(), "id-1");
        let listed = "<ListMultipartUploadsResult><Bucket>b</Bucket>\
            <Upload><Key>a</Key><UploadId>1</UploadId><Initiated>2024-01-01T00:00:00Z</Initiated></Upload>\
            <Upload><Key>b</Key><UploadId>2</UploadId></Upload>\
            <IsTruncated>true</IsTruncated><NextKeyMarker>b</NextKeyMarker>\
            <NextUploadIdMarker>2</NextUploadIdMarker></ListMultipartUploadsResult>";
        let page = parse_uploads_page(listed).unwrap();
        assert_eq!(
            page.uploads,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(page.next, Some(("b".into(), "2".into())));
        let empty = parse_uploads_page(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && empty.next.is_none());
    }

    #[test]
    fn the_complete_body_lists_parts_with_escaped_etags() {
        let body = complete_body(&[(1, "\"e1\"".into()), (2, "<e2>".into())]);
        assert_eq!(
            body,
            "<CompleteMultipartUpload>\
             <Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&lt;e2&gt;</ETag></Part>\
             </CompleteMultipartUpload>"
        );
    }

    #[test]
    fn a_copied_part_has_an_etag() {
        let body = "<CopyPartResult><LastModified>2024-01-01T00:00:00Z</LastModified>\
            <ETag>&quot;e&quot;</ETag></CopyPartResult>";
        assert_eq!(parse_copy_part_etag(body).unwrap(), "\"e\"");
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Tue, 02 Jan 2024 03:04:05 GMT").unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_704_164_645)
        );
        assert!(parse_http_date("soon").is_err());
    }
}
