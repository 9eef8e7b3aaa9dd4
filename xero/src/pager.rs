//! Paging: what to list ([`ListRequest`]), where a listing stands
//! ([`PageCursor`], serialisable for checkpoints), and walking the pages
//! ([`Pager`]) on top of [`XeroClient::get`].
//!
//! Page-paged resources stop at `pageCount` or on a short page; journals
//! page by the last `JournalNumber` seen, 100 at a time, and a server that
//! does not move forward is an error rather than a loop.

use futures::Stream;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client::XeroClient;
use crate::error::ClientError;
use crate::record::{decode_list, Pagination, Record};
use crate::resources::{Paging, Resource, MAX_PAGE_SIZE, OFFSET_PAGE_SIZE};

/// What to list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    /// The resource.
    pub resource: Resource,
    /// Only records changed since (sent for resources with a change stamp).
    pub if_modified_since: Option<OffsetDateTime>,
    /// Records per page for page-paged resources (1..=1000; default 1000).
    pub page_size: u32,
    /// Where to start (default: the first page / offset 0).
    pub start: Option<PageCursor>,
    /// Ask for archived records where the API hides them (default true:
    /// archiving is how deletions show up).
    pub include_archived: bool,
    /// Extra query parameters (`where`, `order`, `Statuses`…).
    pub params: Vec<(String, String)>,
}

impl ListRequest {
    /// Everything of `resource`.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            if_modified_since: None,
            page_size: MAX_PAGE_SIZE,
            start: None,
            include_archived: true,
            params: Vec::new(),
        }
    }

    /// Only records changed since `t`.
    pub fn modified_since(mut self, t: OffsetDateTime) -> Self {
        self.if_modified_since = Some(t);
        self
    }

    /// Records per page (clamped to 1..=1000).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Resume at a cursor from a checkpoint.
    pub fn start_at(mut self, cursor: PageCursor) -> Self {
        self.start = Some(cursor);
        self
    }

    /// Whether to ask for archived records.
    pub fn include_archived(mut self, yes: bool) -> Self {
        self.include_archived = yes;
        self
    }

    /// Adds a query parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }
}

/// A position in a listing: what the next call asks for. Serialisable so it
/// can be checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageCursor {
    /// `page=n`.
    Page(u32),
    /// `offset=n` (journals: the last JournalNumber seen).
    Offset(i64),
    /// The only call of an unpaged resource.
    Single,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The resource.
    pub resource: Resource,
    /// The cursor this page was fetched at.
    pub cursor: PageCursor,
    /// The records, raw.
    pub records: Vec<Record>,
    /// The pagination object, when the response had one.
    pub pagination: Option<Pagination>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<PageCursor>,
}

/// Walks the pages of one [`ListRequest`].
#[derive(Debug)]
pub struct Pager {
    client: XeroClient,
    request: ListRequest,
    next: Option<PageCursor>,
}

impl Pager {
    /// The next page, or `None` when done. On error the position is kept,
    /// so calling again retries the same page.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ClientError> {
        let Some(cursor) = self.next else {
            return Ok(None);
        };
        let page = self.client.fetch_page(&self.request, cursor).await?;
        self.next = page.next;
        Ok(Some(page))
    }

    /// The cursor the next call will fetch (for checkpoints).
    pub fn next_cursor(&self) -> Option<PageCursor> {
        self.next
    }

    /// The request.
    pub fn request(&self) -> &ListRequest {
        &self.request
    }

    /// The pages as a stream (stops after the first error).
    pub fn into_stream(self) -> impl Stream<Item = Result<Page, ClientError>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut pager = state?;
            match pager.next_page().await {
                Ok(Some(page)) => Some((Ok(page), Some(pager))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// Listing, on top of the client's [`XeroClient::get`].
impl XeroClient {
    /// Pages through a resource; see [`Pager::next_page`].
    pub fn pages(&self, request: ListRequest) -> Pager {
        let next = Some(request.start.unwrap_or(match request.resource.paging() {
            Paging::Page => PageCursor::Page(1),
            Paging::Offset => PageCursor::Offset(0),
            Paging::None => PageCursor::Single,
        }));
        Pager {
            client: self.clone(),
            request,
            next,
        }
    }

    /// Every record of a request, all pages (convenience for small data).
    pub async fn fetch_all(&self, request: ListRequest) -> Result<Vec<Record>, ClientError> {
        let mut pager = self.pages(request);
        let mut out = Vec::new();
        while let Some(page) = pager.next_page().await? {
            out.extend(page.records);
        }
        Ok(out)
    }

    /// One page of a resource at `cursor`.
    pub async fn fetch_page(
        &self,
        request: &ListRequest,
        cursor: PageCursor,
    ) -> Result<Page, ClientError> {
        let resource = request.resource;
        let mut query: Vec<(String, String)> = Vec::new();
        match cursor {
            PageCursor::Page(n) => {
                query.push(("page".into(), n.to_string()));
                query.push((
                    "pageSize".into(),
                    request.page_size.clamp(1, MAX_PAGE_SIZE).to_string(),
                ));
            }
            PageCursor::Offset(o) => query.push(("offset".into(), o.to_string())),
            PageCursor::Single => {}
        }
        if resource.info().include_archived && request.include_archived {
            query.push(("includeArchived".into(), "true".into()));
        }
        query.extend(request.params.iter().cloned());
        let since = request
            .if_modified_since
            .filter(|_| resource.supports_if_modified_since());

        let response = self.get(resource.path(), &query, since).await?;
        let (records, pagination) = decode_list(
            resource,
            response.status == StatusCode::NOT_MODIFIED,
            &response.body,
        )?;
        let next = next_cursor(
            resource,
            cursor,
            request.page_size.clamp(1, MAX_PAGE_SIZE),
            &records,
            &pagination,
        )?;
        Ok(Page {
            resource,
            cursor,
            records,
            pagination,
            next,
        })
    }
}

fn next_cursor(
    resource: Resource,
    cursor: PageCursor,
    requested_page_size: u32,
    records: &[Record],
    pagination: &Option<Pagination>,
) -> Result<Option<PageCursor>, ClientError> {
    if records.is_empty() {
        return Ok(None);
    }
    match cursor {
        PageCursor::Single => Ok(None),
        PageCursor::Page(n) => {
            if let Some(p) = pagination {
                if let Some(count) = p.page_count {
                    if u64::from(n) >= count {
                        return Ok(None);
                    }
                }
                let size = p.page_size.unwrap_or(u64::from(requested_page_size));
                if (records.len() as u64) < size {
                    return Ok(None);
                }
            } else if records.len() < requested_page_size as usize {
                // Without a pagination object, a short page is the last one;
                // except that servers predating pageSize send pages of 100.
                if !(records.len() == 100 && requested_page_size > 100) {
                    return Ok(None);
                }
            }
            Ok(Some(PageCursor::Page(n + 1)))
        }
        PageCursor::Offset(offset) => {
            let mut last = None;
            for r in records {
                let number = r.journal_number().ok_or_else(|| ClientError::Decode {
                    path: resource.path().into(),
                    detail: "journal without a JournalNumber".into(),
                })?;
                last = last.max(Some(number));
            }
            let last = last.unwrap_or(offset);
            if last <= offset {
                return Err(ClientError::Decode {
                    path: resource.path().into(),
                    detail: format!("offset paging did not advance past {offset}"),
                });
            }
            if records.len() < OFFSET_PAGE_SIZE {
                Ok(None)
            } else {
                Ok(Some(PageCursor::Offset(last)))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(resource: Resource, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::new(resource, json!({"JournalNumber": i as i64 + 1})))
            .collect()
    }

    #[test]
    fn page_stop_rules() {
        let r = Resource::Invoices;
        let p1 = PageCursor::Page(1);
        let pag = |count| {
            Some(Pagination {
                page: Some(1),
                page_size: Some(1000),
                page_count: Some(count),
                item_count: None,
            })
        };
        // pageCount reached.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &pag(1)).unwrap(),
            None
        );
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &pag(2)).unwrap(),
            Some(PageCursor::Page(2))
        );
        // Short page without pagination.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 999), &None).unwrap(),
            None
        );
        // Full page without pagination: ask again.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 1000), &None).unwrap(),
            Some(PageCursor::Page(2))
        );
        // Legacy 100-record pages are not mistaken for the end.
        assert_eq!(
            next_cursor(r, p1, 1000, &records(r, 100), &None).unwrap(),
            Some(PageCursor::Page(2))
        );
        assert_eq!(next_cursor(r, p1, 1000, &[], &None).unwrap(), None);
        assert_eq!(
            next_cursor(
                Resource::Accounts,
                PageCursor::Single,
                1000,
                &records(r, 5),
                &None
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn offset_rules() {
        let r = Resource::Journals;
        let full = records(r, 100);
        assert_eq!(
            next_cursor(r, PageCursor::Offset(0), 1000, &full, &None).unwrap(),
            Some(PageCursor::Offset(100))
        );
        assert_eq!(
            next_cursor(r, PageCursor::Offset(0), 1000, &records(r, 40), &None).unwrap(),
            None
        );
        // A server that does not move forward must not loop forever.
        assert!(next_cursor(r, PageCursor::Offset(500), 1000, &full, &None).is_err());
        let no_number = vec![Record::new(r, json!({"JournalID": "x"}))];
        assert!(next_cursor(r, PageCursor::Offset(0), 1000, &no_number, &None).is_err());
    }
}
