//! `Listing`: the entries of one directory (objects and common prefixes of a ListObjectsV2
//! with `delimiter=/`), fetched a page at a time as the caller iterates.

use std::collections::VecDeque;
use std::time::SystemTime;

use rusty_s3::Method;

use crate::error::S3Error;
use crate::request::Call;
use crate::store::Store;
use crate::xml;

/// One name inside a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A common prefix: keys continue below this name (or a `name/` marker object exists).
    Directory {
        /// The name inside the listed directory, without the trailing `/`.
        name: String,
    },
    /// An object.
    Object {
        /// The name inside the listed directory.
        name: String,
        /// Its length in bytes.
        size: u64,
        /// When it was last written.
        modified: SystemTime,
    },
}

impl Entry {
    /// The name inside the listed directory, whichever kind the entry is.
    pub fn name(&self) -> &str {
        match self {
            Entry::Directory { name } | Entry::Object { name, .. } => name,
        }
    }
}

/// An iterator over a directory's entries that holds at most one page (1,000 entries) and
/// fetches the next page (by continuation token) when the caller gets there. After an error
/// it ends.
#[derive(Debug)]
pub struct Listing {
    store: Store,
    /// The full prefix listed, ending in `/` (or empty for a bucket root).
    prefix: String,
    page: VecDeque<Entry>,
    next: Next,
}

#[derive(Debug)]
enum Next {
    First,
    Token(String),
    Done,
}

impl Listing {
    pub(crate) fn new(store: Store, prefix: String) -> Listing {
        Listing {
            store,
            prefix,
            page: VecDeque::new(),
            next: Next::First,
        }
    }

    fn fetch(&mut self, token: Option<String>) -> Result<(), S3Error> {
        let mut call = Call::new(Method::Get, None);
        call.query.push(("list-type", "2".into()));
        call.query.push(("delimiter", "/".into()));
        call.query.push(("prefix", self.prefix.clone()));
        if let Some(token) = &token {
            call.query.push(("continuation-token", token.clone()));
        }
        let page = xml::parse_list_page(&self.store.client.send_for_text(&call)?)?;
        if page.next_token.is_some() && page.next_token == token {
            return Err(S3Error::Protocol(
                "ListObjectsV2 returned the same continuation token again".into(),
            ));
        }
        let mut entries: Vec<(String, Entry)> = Vec::new();
        for (key, size, modified) in page.objects {
            if let Some(name) = self.name_of(&key) {
                entries.push((
                    key.clone(),
                    Entry::Object {
                        name,
                        size,
                        modified,
                    },
                ));
            }
        }
        for prefix in page.prefixes {
            if let Some(name) = self.name_of(prefix.trim_end_matches('/')) {
                entries.push((prefix.clone(), Entry::Directory { name }));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.page = entries.into_iter().map(|(_, entry)| entry).collect();
        self.next = match page.next_token {
            Some(token) => Next::Token(token),
            None => Next::Done,
        };
        Ok(())
    }

    /// The name of `key` inside the listed directory; `None` for the directory's own marker
    /// and for keys the server should not have sent.
    fn name_of(&self, key: &str) -> Option<String> {
        let name = key.strip_prefix(&self.prefix)?;
        (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
    }
}

impl Iterator for Listing {
    type Item = Result<Entry, S3Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.page.pop_front() {
                return Some(Ok(entry));
            }
            let token = match std::mem::replace(&mut self.next, Next::Done) {
                Next::Done => return None,
                Next::First => None,
                Next::Token(token) => Some(token),
            };
            if let Err(error) = self.fetch(token) {
                return Some(Err(error));
            }
        }
    }
}
