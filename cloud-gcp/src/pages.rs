//! Listings, page by page. Every API the adapter lists answers one page and
//! the token of the next (empty, or absent, on the last); the official
//! clients and the JSON APIs alike go through [`every_page`].

use std::future::Future;

use cloud::error::CloudResult;

/// The items of every page: `page` fetches the page of a token (empty for
/// the first) and answers its items and the next page's token.
pub(crate) async fn every_page<T, F, Fut>(mut page: F) -> CloudResult<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = CloudResult<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(std::mem::take(&mut token)).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_until_a_page_names_no_next() {
        let mut asked = Vec::new();
        let items = every_page(|token| {
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
}
