//! The Accounting client against local mock servers: paging, incremental
//! headers, limits, retries and token refresh.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use time::macros::datetime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{bearer_token, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use xero::limits::{LimitConfig, RateLimits, VirtualClock};
use xero::models::Invoice;
use xero::{
    ClientError, ListRequest, PageCursor, Resource, RetryPolicy, SecretString, StaticToken,
    TokenError, TokenProvider, XeroClient,
};

const TENANT: &str = "fe79f7dd-b6d4-4a92-ba7b-538af6289c58";
const TOKEN: &str = "access-token-value-1";

struct Harness {
    server: MockServer,
    clock: Arc<VirtualClock>,
    client: XeroClient,
}

async fn harness() -> Harness {
    harness_with(Arc::new(StaticToken(SecretString::new(TOKEN)))).await
}

async fn harness_with(tokens: Arc<dyn TokenProvider>) -> Harness {
    let server = MockServer::start().await;
    let clock = VirtualClock::new();
    let limits = RateLimits::with_clock(LimitConfig::default(), clock.clone());
    let client = XeroClient::builder(TENANT, tokens)
        .api_base(format!("{}/api.xro/2.0", server.uri()))
        .limits(limits)
        .build()
        .unwrap();
    Harness {
        server,
        clock,
        client,
    }
}

fn invoice(i: usize) -> Value {
    json!({
        "Type": "ACCREC",
        "InvoiceID": format!("00000000-0000-0000-0000-{i:012}"),
        "InvoiceNumber": format!("INV-{i:05}"),
        "Status": "AUTHORISED",
        "Date": "/Date(1511827200000+0000)/",
        "Total": 46.0,
        "TotalTax": 6.0,
        "LineItems": [{"Description": "Tires", "LineAmount": 40.0, "TaxAmount": 6.0}],
        "UpdatedDateUTC": "/Date(1511893792820+0000)/",
        "SomeFieldXeroAddsLater": {"nested": [i]}
    })
}

/// Serves `total` invoices by page/pageSize, like Xero.
struct PagedInvoices {
    total: usize,
    with_pagination: bool,
}

impl Respond for PagedInvoices {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let size: usize = q
            .get("pageSize")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100);
        let start = (page - 1) * size;
        let end = (start + size).min(self.total);
        let items: Vec<Value> = (start..end.max(start)).map(invoice).collect();
        let mut body = json!({
            "Id": "900c500b-e83c-4ce2-902a-b8ba04751748",
            "Status": "OK",
            "ProviderName": "test",
            "DateTimeUTC": "/Date(1552326816230)/",
            "Invoices": items,
        });
        if self.with_pagination {
            body["pagination"] = json!({
                "page": page,
                "pageSize": size,
                "pageCount": self.total.div_ceil(size),
                "itemCount": self.total,
            });
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

async fn mount_invoices(server: &MockServer, total: usize, with_pagination: bool) {
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(PagedInvoices {
            total,
            with_pagination,
        })
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn query(r: &Request, key: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn exactly_1000_records_is_one_call_with_pagination() {
    let h = harness().await;
    mount_invoices(&h.server, 1000, true).await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    assert_eq!(records.len(), 1000);
    assert_eq!(h.client.calls_made(), 1);
    let reqs = requests(&h.server).await;
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(query(r, "page").as_deref(), Some("1"));
    assert_eq!(query(r, "pageSize").as_deref(), Some("1000"));
    assert_eq!(query(r, "includeArchived").as_deref(), Some("true"));
    assert_eq!(
        r.headers.get("authorization").unwrap(),
        &format!("Bearer {TOKEN}")
    );
    assert_eq!(r.headers.get("xero-tenant-id").unwrap(), TENANT);
    assert_eq!(r.headers.get("accept").unwrap(), "application/json");
    assert!(r.headers.get("if-modified-since").is_none());
}

#[tokio::test]
async fn records_keep_every_field_and_offer_typed_access() {
    let h = harness().await;
    mount_invoices(&h.server, 3, true).await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    let r = &records[2];
    assert_eq!(r.id(), Some("00000000-0000-0000-0000-000000000002"));
    assert_eq!(
        r.updated_at().unwrap(),
        Some(datetime!(2017-11-28 18:29:52.820 UTC))
    );
    assert_eq!(r.as_value()["SomeFieldXeroAddsLater"]["nested"][0], 2);
    let typed: Invoice = r.to_typed().unwrap();
    assert_eq!(typed.invoice_number.as_deref(), Some("INV-00002"));
    assert_eq!(typed.line_items.len(), 1);
}

#[tokio::test]
async fn records_1001_take_two_calls() {
    let h = harness().await;
    mount_invoices(&h.server, 1001, true).await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    assert_eq!(records.len(), 1001);
    assert_eq!(h.client.calls_made(), 2);
    let pages: Vec<_> = requests(&h.server)
        .await
        .iter()
        .map(|r| query(r, "page").unwrap())
        .collect();
    assert_eq!(pages, ["1", "2"]);
    // No record lost or repeated across the boundary.
    let mut ids: Vec<_> = records.iter().map(|r| r.id().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1001);
}

#[tokio::test]
async fn zero_records_is_one_call() {
    let h = harness().await;
    mount_invoices(&h.server, 0, true).await;
    let mut pager = h.client.pages(ListRequest::new(Resource::Invoices));
    let page = pager.next_page().await.unwrap().unwrap();
    assert!(page.records.is_empty());
    assert_eq!(page.next, None);
    assert!(pager.next_page().await.unwrap().is_none());
    assert_eq!(h.client.calls_made(), 1);
}

#[tokio::test]
async fn without_pagination_a_full_page_asks_again_and_a_short_page_stops() {
    let h = harness().await;
    mount_invoices(&h.server, 1000, false).await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    assert_eq!(records.len(), 1000);
    // Page 1 full, page 2 empty.
    assert_eq!(h.client.calls_made(), 2);

    let h = harness().await;
    mount_invoices(&h.server, 2500, false).await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    assert_eq!(records.len(), 2500);
    // 1000 + 1000 + 500 (short: stop).
    assert_eq!(h.client.calls_made(), 3);
}

#[tokio::test]
async fn pages_one_at_a_time_with_resumable_cursor() {
    let h = harness().await;
    mount_invoices(&h.server, 2500, true).await;
    let mut pager = h.client.pages(ListRequest::new(Resource::Invoices));
    assert_eq!(pager.next_cursor(), Some(PageCursor::Page(1)));
    let first = pager.next_page().await.unwrap().unwrap();
    assert_eq!(first.cursor, PageCursor::Page(1));
    assert_eq!(first.pagination.unwrap().page_count, Some(3));
    assert_eq!(pager.next_cursor(), Some(PageCursor::Page(2)));
    // Only one call so far: the caller stores the page before asking for more.
    assert_eq!(h.client.calls_made(), 1);

    // Resume from the checkpoint in a new pager.
    let resumed = h
        .client
        .pages(ListRequest::new(Resource::Invoices).start_at(pager.next_cursor().unwrap()));
    let pages: Vec<_> = resumed.into_stream().collect().await;
    let counts: Vec<usize> = pages
        .into_iter()
        .map(|p| p.unwrap().records.len())
        .collect();
    assert_eq!(counts, [1000, 500]);
    assert_eq!(h.client.calls_made(), 3);
}

/// Journals: `offset` = last JournalNumber, 100 per call.
struct JournalsByOffset {
    total: i64,
}

impl Respond for JournalsByOffset {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let offset: i64 = query(request, "offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let journals: Vec<Value> = ((offset + 1)..=(offset + 100).min(self.total))
            .map(|n| {
                json!({
                    "JournalID": format!("j-{n}"),
                    "JournalNumber": n,
                    "JournalDate": "/Date(1539993600000+0000)/",
                    "CreatedDateUTC": "/Date(1541176243467+0000)/",
                    "JournalLines": [{"NetAmount": 40.0}, {"NetAmount": -40.0}]
                })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "Journals": journals }))
    }
}

#[tokio::test]
async fn journals_page_by_offset() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Journals"))
        .respond_with(JournalsByOffset { total: 250 })
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Journals))
        .await
        .unwrap();
    assert_eq!(records.len(), 250);
    let numbers: Vec<i64> = records
        .iter()
        .map(|r| r.journal_number().unwrap())
        .collect();
    assert_eq!(numbers, (1..=250).collect::<Vec<_>>());
    let offsets: Vec<_> = requests(&h.server)
        .await
        .iter()
        .map(|r| query(r, "offset").unwrap())
        .collect();
    assert_eq!(offsets, ["0", "100", "200"]);
    assert!(requests(&h.server).await[0]
        .url
        .query_pairs()
        .all(|(k, _)| k != "page"));
    let j: xero::models::Journal = records[0].to_typed().unwrap();
    assert_eq!(j.imbalance(), 0.0);

    // Exactly 200: a third, empty call ends it; resuming from a stored offset works.
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Journals"))
        .respond_with(JournalsByOffset { total: 200 })
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Journals).start_at(PageCursor::Offset(150)))
        .await
        .unwrap();
    assert_eq!(records.first().unwrap().journal_number(), Some(151));
    assert_eq!(records.len(), 50);
    assert_eq!(h.client.calls_made(), 1);
}

#[tokio::test]
async fn if_modified_since_is_sent_in_utc_only_when_given() {
    let h = harness().await;
    mount_invoices(&h.server, 2, true).await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Currencies"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Currencies": [{"Code": "NZD"}]})),
        )
        .mount(&h.server)
        .await;
    let since = datetime!(2020-02-06 12:17:43.202 -08:00);
    h.client
        .fetch_all(ListRequest::new(Resource::Invoices).modified_since(since))
        .await
        .unwrap();
    h.client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap();
    // Currencies have no change stamp: the header would only hide records.
    let currencies = h
        .client
        .fetch_all(ListRequest::new(Resource::Currencies).modified_since(since))
        .await
        .unwrap();
    assert_eq!(currencies[0].id(), Some("NZD"));
    let reqs = requests(&h.server).await;
    assert_eq!(
        reqs[0].headers.get("if-modified-since").unwrap(),
        "2020-02-06T20:17:43"
    );
    assert!(reqs[1].headers.get("if-modified-since").is_none());
    assert!(reqs[2].headers.get("if-modified-since").is_none());
    assert!(query(&reqs[2], "page").is_none());
}

#[tokio::test]
async fn not_modified_is_an_empty_last_page() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Contacts"))
        .respond_with(ResponseTemplate::new(304))
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(
            ListRequest::new(Resource::Contacts).modified_since(datetime!(2030-01-01 0:00 UTC)),
        )
        .await
        .unwrap();
    assert!(records.is_empty());
    assert_eq!(h.client.calls_made(), 1);
}

fn accounts_ok() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"Accounts": [{"AccountID": "a1", "Code": "200"}]}))
}

#[tokio::test]
async fn minute_429_waits_retry_after_then_retries() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "37")
                .insert_header("X-Rate-Limit-Problem", "minute"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(records[0].id(), Some("a1"));
    assert_eq!(h.client.calls_made(), 2);
    let waited = h.clock.elapsed();
    assert!(waited >= Duration::from_secs(37), "{waited:?}");
    assert!(waited < Duration::from_secs(40), "{waited:?}");
}

#[tokio::test]
async fn app_minute_429_also_waits() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "5")
                .insert_header("X-Rate-Limit-Problem", "appminute"),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(h.client.calls_made(), 3);
    assert_eq!(h.client.rate_limited_responses(), 2);
    assert!(h.clock.elapsed() >= Duration::from_secs(10));
}

#[tokio::test]
async fn absurd_retry_after_is_capped_at_a_day_without_panicking() {
    let h = harness().await;
    // u64::MAX seconds: once an Instant overflow panic.
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "18446744073709551615")
                .insert_header("X-Rate-Limit-Problem", "minute"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    let waited = h.clock.elapsed();
    assert!(waited >= xero::limits::MAX_RETRY_AFTER, "{waited:?}");
    assert!(
        waited < xero::limits::MAX_RETRY_AFTER + Duration::from_secs(5),
        "{waited:?}"
    );

    // A day 429 asking for ten years reports (and blocks for) one day.
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "315360000")
                .insert_header("X-Rate-Limit-Problem", "day"),
        )
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    assert_eq!(
        err.day_limit_retry_after(),
        Some(xero::limits::MAX_RETRY_AFTER)
    );
}

#[tokio::test]
async fn day_429_is_a_typed_error_without_retry() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "5400")
                .insert_header("X-Rate-Limit-Problem", "day"),
        )
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::DayLimitReached { retry_after } if retry_after == Duration::from_secs(5400)),
        "{err:?}"
    );
    assert_eq!(err.day_limit_retry_after(), Some(Duration::from_secs(5400)));
    assert_eq!(h.client.calls_made(), 1);
    assert_eq!(h.client.rate_limited_responses(), 1);
    assert_eq!(h.clock.elapsed(), Duration::ZERO);
    // The next call does not even reach Xero.
    let again = h.client.organisation().await.unwrap_err();
    assert!(matches!(again, ClientError::DayLimitReached { .. }));
    assert_eq!(requests(&h.server).await.len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    match &err {
        ClientError::Server {
            status, attempts, ..
        } => {
            assert_eq!(*status, 503);
            assert_eq!(*attempts, 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(requests(&h.server).await.len(), 5);
    // Backoff happened (on the virtual clock): at least 0.5+1+2+4 s.
    assert!(
        h.clock.elapsed() >= Duration::from_millis(7_500),
        "{:?}",
        h.clock.elapsed()
    );
}

#[tokio::test]
async fn transient_server_errors_recover() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(h.client.calls_made(), 3);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let clock = VirtualClock::new();
    let client = XeroClient::builder(TENANT, Arc::new(StaticToken(SecretString::new(TOKEN))))
        .api_base(format!("{}/api.xro/2.0", server.uri()))
        .limits(RateLimits::with_clock(
            LimitConfig::default(),
            clock.clone(),
        ))
        .timeout(Duration::from_millis(100))
        .retry(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let err = client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    match err {
        ClientError::Transport {
            attempts, source, ..
        } => {
            assert_eq!(attempts, 3);
            assert!(source.is_timeout());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.calls_made(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // Bind then drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let clock = VirtualClock::new();
    let client = XeroClient::builder(TENANT, Arc::new(StaticToken(SecretString::new(TOKEN))))
        .api_base(format!("http://127.0.0.1:{port}/api.xro/2.0"))
        .limits(RateLimits::with_clock(
            LimitConfig::default(),
            clock.clone(),
        ))
        .build()
        .unwrap();
    let err = client.organisation().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Transport { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(!format!("{err}").contains(TOKEN));
}

/// A provider whose first token is stale and whose refresh yields another.
struct CountingProvider {
    current: Mutex<String>,
    next: String,
    refreshes: AtomicUsize,
}

impl CountingProvider {
    fn new(first: &str, next: &str) -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(first.into()),
            next: next.into(),
            refreshes: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl TokenProvider for CountingProvider {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        Ok(SecretString::new(self.current.lock().unwrap().clone()))
    }

    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString, TokenError> {
        let mut cur = self.current.lock().unwrap();
        assert_eq!(rejected.expose_secret(), cur.as_str());
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        *cur = self.next.clone();
        Ok(SecretString::new(cur.clone()))
    }
}

#[tokio::test]
async fn unauthorized_refreshes_once_then_succeeds() {
    let provider = CountingProvider::new("stale-token", "fresh-token");
    let h = harness_with(provider.clone()).await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .and(bearer_token("stale-token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"Type": null, "Title": "Unauthorized", "Status": 401, "Detail": "TokenExpired: token expired"}),
        ))
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .and(bearer_token("fresh-token"))
        .and(header("xero-tenant-id", TENANT))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    let records = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(h.client.calls_made(), 2);
}

#[tokio::test]
async fn unauthorized_twice_is_an_error_after_one_refresh() {
    let provider = CountingProvider::new("stale-token", "also-rejected");
    let h = harness_with(provider.clone()).await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"Title": "Unauthorized", "Detail": "AuthenticationUnsuccessful"}),
        ))
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    match &err {
        ClientError::Unauthorized { message } => {
            assert_eq!(message, "AuthenticationUnsuccessful")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(requests(&h.server).await.len(), 2);
}

#[tokio::test]
async fn static_token_401_reports_refresh_unavailable() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Token(TokenError::RefreshUnavailable)),
        "{err:?}"
    );
}

#[tokio::test]
async fn other_client_errors_carry_xeros_message_but_never_the_token() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": format!("A validation exception occurred for {TOKEN}"),
            "Elements": [{"ValidationErrors": [{"Message": "pageSize must be at most 1000"}]}]
        })))
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Items"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"Title": "Forbidden", "Detail": "AuthorizationUnsuccessful"}),
            ),
        )
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Invoices))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    match err {
        ClientError::Api {
            status,
            error_type,
            message,
            path,
        } => {
            assert_eq!(status, 400);
            assert_eq!(path, "Invoices");
            assert_eq!(error_type.as_deref(), Some("ValidationException"));
            assert!(message.contains("pageSize must be at most 1000"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Items))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 403, message, .. } if message == "AuthorizationUnsuccessful"),
        "{err:?}"
    );
    // Not retried.
    assert_eq!(h.client.calls_made(), 2);
}

#[tokio::test]
async fn malformed_envelope_is_a_decode_error() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Payments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Invoices": []})))
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Items"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
        .mount(&h.server)
        .await;
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Payments))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    let err = h
        .client
        .fetch_all(ListRequest::new(Resource::Items))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn sixty_calls_a_minute_then_the_limiter_waits() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    for _ in 0..60 {
        h.client
            .fetch_all(ListRequest::new(Resource::Accounts))
            .await
            .unwrap();
    }
    assert_eq!(h.clock.elapsed(), Duration::ZERO);
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert!(h.clock.elapsed() >= Duration::from_secs(60));
    assert_eq!(requests(&h.server).await.len(), 61);
}

#[tokio::test]
async fn remaining_headers_slow_the_client_down() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok().insert_header("X-MinLimit-Remaining", "0"))
        .mount(&h.server)
        .await;
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(h.clock.elapsed(), Duration::ZERO);
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert!(h.clock.elapsed() >= Duration::from_secs(60));
}

/// A bare HTTP/1.1 server that counts requests in flight; answers after
/// `delay` (decrementing before it writes, so the count is exact).
async fn counting_server(delay: Duration) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let (inf, max) = (in_flight.clone(), max_seen.clone());
    let served = Arc::new(AtomicUsize::new(0));
    let served2 = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (inf, max, served) = (inf.clone(), max.clone(), served2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                inf.fetch_sub(1, Ordering::SeqCst);
                served.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"Accounts":[{"AccountID":"a1"}]}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), max_seen, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_five_calls_in_flight() {
    let (base, max_seen, served) = counting_server(Duration::from_millis(200)).await;
    let clock = VirtualClock::new();
    let limits = RateLimits::with_clock(LimitConfig::default(), clock);
    let client = XeroClient::builder(TENANT, Arc::new(StaticToken(SecretString::new(TOKEN))))
        .api_base(format!("{base}/api.xro/2.0"))
        .limits(limits.clone())
        .build()
        .unwrap();
    // A second client of the same organisation shares the cap.
    let twin = XeroClient::builder(TENANT, Arc::new(StaticToken(SecretString::new(TOKEN))))
        .api_base(format!("{base}/api.xro/2.0"))
        .limits(limits)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 {
            client.clone()
        } else {
            twin.clone()
        };
        tasks.push(tokio::spawn(async move {
            c.fetch_all(ListRequest::new(Resource::Accounts)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    assert_eq!(served.load(Ordering::SeqCst), 20);
    assert_eq!(max_seen.load(Ordering::SeqCst), 5);
    assert_eq!(client.calls_made() + twin.calls_made(), 20);
}

#[tokio::test]
async fn service_unavailable_with_retry_after_is_honoured() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "10"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Accounts"))
        .respond_with(accounts_ok())
        .mount(&h.server)
        .await;
    h.client
        .fetch_all(ListRequest::new(Resource::Accounts))
        .await
        .unwrap();
    assert_eq!(h.client.calls_made(), 2);
    assert!(h.clock.elapsed() >= Duration::from_secs(10));
}

#[tokio::test]
async fn page_size_is_clamped_and_custom_params_pass_through() {
    let h = harness().await;
    mount_invoices(&h.server, 5, true).await;
    let mut req = ListRequest::new(Resource::Invoices)
        .param("order", "UpdatedDateUTC ASC")
        .include_archived(false);
    req.page_size = 5_000;
    h.client.fetch_all(req).await.unwrap();
    let reqs = requests(&h.server).await;
    assert_eq!(query(&reqs[0], "pageSize").as_deref(), Some("1000"));
    assert_eq!(
        query(&reqs[0], "order").as_deref(),
        Some("UpdatedDateUTC ASC")
    );
    assert!(query(&reqs[0], "includeArchived").is_none());
}

fn capped_client(uri: &str, cap: usize) -> XeroClient {
    let limits = RateLimits::with_clock(LimitConfig::default(), VirtualClock::new());
    XeroClient::builder(TENANT, Arc::new(StaticToken(SecretString::new(TOKEN))))
        .api_base(format!("{uri}/api.xro/2.0"))
        .limits(limits)
        .max_response_bytes(cap)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_response_larger_than_the_cap_fails_once_with_a_decode_error() {
    let server = MockServer::start().await;
    let body = json!({"Organisations": [{"Name": "x".repeat(4096)}]}).to_string();
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Organisation"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body.clone()))
        .mount(&server)
        .await;
    // Under the cap: read as before.
    let roomy = capped_client(&server.uri(), body.len());
    roomy.organisation().await.unwrap();
    // Over it (wiremock declares the length: refused before reading).
    let client = capped_client(&server.uri(), 1024);
    let err = client.organisation().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Decode { detail, .. } if detail.contains("larger than 1024 bytes")),
        "{err:?}"
    );
    // Not retried as transient: the same call would answer as much again.
    assert_eq!(client.calls_made(), 1);
}

/// A bare HTTP/1.1 server answering every request 200 with a chunked body
/// of `chunks` chunks of 1 KiB (no Content-Length to refuse it by).
async fn chunked_server(chunks: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = format!("400\r\n{}\r\n", " ".repeat(1024));
                for _ in 0..chunks {
                    if sock.write_all(piece.as_bytes()).await.is_err() {
                        return; // the client stopped reading
                    }
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_streamed_response_is_cut_off_at_the_cap() {
    // 64 MiB streamed; the client must give up after 64 KiB.
    let uri = chunked_server(64 * 1024).await;
    let client = capped_client(&uri, 64 * 1024);
    let err = client.organisation().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Decode { detail, .. } if detail.contains("larger than 65536 bytes")),
        "{err:?}"
    );
    assert_eq!(client.calls_made(), 1);
}
