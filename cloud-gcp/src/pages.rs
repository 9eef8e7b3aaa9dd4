//! Listings, page by page. Every API the adapter lists answers one page and
//! the token of the next (empty, or absent, on the last); the official
//! clients and the JSON APIs alike go through [`every_page`].
//!
//! A remote that misbehaves must not make a listing endless: a token seen
//! before in the same listing, or more than [`MAX_PAGES`] pages, ends it with
//! an error instead of looping (and growing the results) for ever.

use std::collections::HashSet;
use std::future::Future;

use cloud::error::{CloudError, CloudResult};

/// Most pages one listing follows. The adapter asks for at most 1,000 items a
/// page (objects, datasets, tables), so this allows ten million items in one
/// listing, far more than any cell holds; a remote still answering new tokens
/// past that is looping, and following it would only grow memory and calls.
pub(crate) const MAX_PAGES: usize = 10_000;

/// The items of every page of `resource`: `page` fetches the page of a token
/// (empty for the first) and answers its items and the next page's token.
pub(crate) async fn every_page<T, F, Fut>(resource: &str, mut page: F) -> CloudResult<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = CloudResult<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let (items, next) = page(std::mem::take(&mut token)).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        // The same token again would fetch the same pages again, for ever.
        if !seen.insert(next.clone()) {
            return Err(CloudError::permanent(
                resource,
                format!(
                    "the listing answered a page token it had answered before, after {} pages; \
                     stopped instead of listing the same pages for ever",
                    seen.len() + 1
                ),
            ));
        }
        token = next;
    }
    Err(CloudError::permanent(
        resource,
        format!(
            "the listing had more than {MAX_PAGES} pages; stopped instead of following it further"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_until_a_page_names_no_next() {
        let mut asked = Vec::new();
        let items = every_page("things", |token| {
            asked.push(token.clone());
            async move {
                Ok(match token.as_str() {
                    "" => (vec![1, 2], "b".to_owned()),
                    "b" => (vec![3], "c".to_owned()),
                    _ => (vec![], String::new()),
                })
            }
        })
        .await
        .expect("pages");
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(asked, ["", "b", "c"]);
    }

    #[tokio::test]
    async fn a_page_token_answered_again_ends_the_listing_with_an_error() {
        let mut asked = 0;
        // "a" -> "b" -> "a" again: without the check this loops for ever.
        let listing = every_page("things", |token| {
            asked += 1;
            async move {
                Ok(match token.as_str() {
                    "" => (vec![1], "a".to_owned()),
                    "a" => (vec![2], "b".to_owned()),
                    _ => (vec![3], "a".to_owned()),
                })
            }
        })
        .await;
        let err = listing.expect_err("a repeated token is an error");
        assert!(!err.is_retryable(), "{err}");
        let message = err.to_string();
        assert!(message.starts_with("things:"), "{message}");
        assert!(message.contains("page token"), "{message}");
        assert_eq!(asked, 3, "stopped as soon as the token came back");
    }

    #[tokio::test]
    async fn the_same_token_on_every_page_ends_the_listing() {
        let mut asked = 0;
        let listing = every_page("things", |_token| {
            asked += 1;
            async { Ok((vec![0u8; 10], "same".to_owned())) }
        })
        .await;
        assert!(listing.is_err());
        assert_eq!(asked, 2);
    }

    #[tokio::test]
    async fn a_listing_with_new_tokens_for_ever_stops_at_the_page_cap() {
        let mut asked = 0;
        let listing = every_page("things", |_token| {
            asked += 1;
            let next = asked.to_string();
            async move { Ok((vec![()], next)) }
        })
        .await;
        let err = listing.expect_err("too many pages");
        assert!(err.to_string().contains("more than"), "{err}");
        assert_eq!(asked, MAX_PAGES);
    }
}
